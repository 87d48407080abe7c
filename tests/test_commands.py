"""The commands dbt, Meltano and dlt users reach for, through the real CLI on the demo project built
once per module: `headwater status`, `query`, `shell`, `test`, `run --select --full-refresh`,
`dbt ARGS...` and `docs` (issue 20)."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
import io
import json
import os
import pty
import select
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import httpx
import pytest
from cli_process import HEADWATER, OutputLines, cli_env, run_cli
from conftest_web import ORG_DATA, make_install
from demo_project import campaign_db, make_project, published_rows, recent_runs_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headwater.config import LoadedProject, load_project
from headwater.errors import ExitCode
from headwater.publish import query as published_query
from headwater.services.runs import get_run, table_stats
from headwater.sqltext import literal
from headwater.system import open_system_db
from headwater.warehouse import open_warehouse

SIGNUPS = 300
ENV = {"NO_COLOR": "1", "COLUMNS": "200"}
# The demo's own reconcile query (headwater.yml): sign-ups per region, in the source.
SOURCE_BY_REGION = """
    select r.name, count(*) from signups s join events e on e.event_id = s.event_id
    join locations l on l.location_id = e.location_id join regions r on r.region_id = l.region_id group by r.name"""


def hw(*args: str | Path, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=cwd, stdin=stdin, env=cli_env(**ENV), timeout=180)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def errors(text: str) -> int:
    return sum(line.startswith("Error:") for line in text.splitlines())


def user_error(result: subprocess.CompletedProcess[str], code: int = ExitCode.USER_ERROR) -> str:
    """A user error: the exit code, no traceback, and the message (what, why, fix) printed once."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert errors(result.stderr) == 1, result.stderr
    assert "Fix:" in result.stderr, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LoadedProject:
    """The demo project after one `headwater run` (shared: tests that change it work on a copy)."""
    project = make_project(tmp_path_factory.mktemp("commands") / "demo", SIGNUPS)
    ok(hw("run", "-p", project.root))
    return project


@pytest.fixture
def copy(built: LoadedProject, tmp_path: Path) -> LoadedProject:
    """A copy of the built project of this test's own (its warehouse and system database included)."""
    target = tmp_path / "demo"
    shutil.copytree(built.root, target, symlinks=True)
    return load_project(target)


def source_by_region(project: LoadedProject) -> dict[str, int]:
    with sqlite3.connect(campaign_db(project)) as con:
        return dict(con.execute(SOURCE_BY_REGION).fetchall())


def source_count(project: LoadedProject, table: str) -> int:
    with sqlite3.connect(campaign_db(project)) as con:
        return int(con.execute(f"select count(*) from {table}").fetchone()[0])


def snapshot_of(project: LoadedProject) -> Path:
    snapshot = open_warehouse(project.root, project.config.warehouse).current_snapshot()
    assert snapshot is not None
    return snapshot


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- status --------------------------------------------------------------------------------------


def test_status_json_says_last_run_next_run_freshness_and_what_is_published(built: LoadedProject) -> None:
    before = dt.datetime.now(dt.UTC)
    data = json.loads(ok(hw("status", "--json", "-p", built.root)).stdout)
    run = recent_runs_of(built, 1)[0]
    pipeline = data["pipelines"]["flake_rate"]
    assert pipeline["last_run"]["id"] == run.id and pipeline["last_run"]["status"] == "success"
    assert pipeline["last_run"]["duration_seconds"] > 0
    # The demo runs at 07:00 campaign time every day: the next one is within a day, at 07:00 in New York.
    next_run = dt.datetime.fromisoformat(pipeline["next_run"])
    assert before < next_run <= before + dt.timedelta(days=1)
    assert next_run.astimezone(ZoneInfo("America/New_York")).time() == dt.time(7, 0)
    # Every table of both sources, with the rows the source has (the roster: its rows less those quarantined).
    tables = {(t["source"], t["table"]): t for t in pipeline["tables"]}
    for table in ("events", "locations", "organizers", "regions", "signup_statuses", "signups", "volunteers"):
        assert tables[("campaign", table)]["rows"] == source_count(built, table), table
        assert tables[("campaign", table)]["run"] == run.id
    assert ("roster", "organizers") in tables
    synced = dt.datetime.fromisoformat(tables[("campaign", "signups")]["synced_at"])
    assert run.started_at.replace(tzinfo=dt.UTC) <= synced <= before
    # What readers see, read from the snapshot itself.
    published = data["published"]
    assert published["snapshot"] == snapshot_of(built).name and published["run"] == run.id
    assert published["tables"] == {"flake_rate_weekly": len(published_rows(built))}


def test_status_text(built: LoadedProject) -> None:
    text = ok(hw("status", "-p", built.root)).stdout
    assert "Pipeline flake_rate" in text and "success" in text and "next run:" in text
    assert "signup_statuses" in text and f"{source_count(built, 'signup_statuses'):,}" in text
    assert "flake_rate_weekly:" in text


# --- query and shell -----------------------------------------------------------------------------


def test_query_prints_published_rows_as_json_csv_and_a_table(built: LoadedProject) -> None:
    sql = "select region, sum(total_signups)::bigint as signups from flake_rate_weekly group by region order by region"
    rows = json.loads(ok(hw("query", sql, "--json", "-p", built.root)).stdout)
    assert {r["region"]: r["signups"] for r in rows} == source_by_region(built)  # the mart agrees with the source
    as_csv = list(csv.DictReader(io.StringIO(ok(hw("query", sql, "--csv", "-p", built.root)).stdout)))
    assert [(r["region"], int(r["signups"])) for r in as_csv] == [(r["region"], r["signups"]) for r in rows]
    table = ok(hw("query", sql, "-p", built.root)).stdout
    for row in rows:
        assert row["region"] in table and str(row["signups"]) in table
    assert user_error(hw("query", sql, "--json", "--csv", "-p", built.root))


WRITES = [
    "insert into flake_rate_weekly select * from flake_rate_weekly",
    "delete from flake_rate_weekly",
    "update flake_rate_weekly set total_signups = 0",
    "drop table flake_rate_weekly",
    "create table t (a int)",
    "create view v as select 1",
    "alter table flake_rate_weekly add column x int",
    "create or replace table flake_rate_weekly as select 1 as a",
]
OUTSIDE = [
    "copy flake_rate_weekly to '/tmp/headwater-leak.csv'",
    "select * from read_csv('/etc/passwd')",
    "attach '/tmp/headwater-other.duckdb' as other",
    "set enable_external_access = true",
    "install httpfs",
]


def test_query_refuses_a_write_with_exit_2(built: LoadedProject) -> None:
    snapshot = snapshot_of(built)
    before = digest(snapshot)
    assert "read-only" in user_error(hw("query", "delete from flake_rate_weekly", "-p", built.root))
    assert digest(snapshot) == before


def test_every_write_and_reach_outside_is_refused_by_the_engine(built: LoadedProject) -> None:
    """All of them in one shell script (one process): each refused, the snapshot unchanged byte for byte."""
    snapshot = snapshot_of(built)
    before = digest(snapshot)
    script = "".join(f"{sql};\n" for sql in [*WRITES, *OUTSIDE]) + "select count(*) as n from flake_rate_weekly;\n"
    result = hw("shell", "--json", "-p", built.root, stdin=script)
    assert result.returncode == ExitCode.USER_ERROR, (result.stdout, result.stderr)
    assert errors(result.stderr) == len(WRITES) + len(OUTSIDE), result.stderr
    assert result.stderr.count("read-only") >= len(WRITES)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [{"n": len(published_rows(built))}]  # the table is still whole
    assert digest(snapshot) == before
    assert not Path("/tmp/headwater-leak.csv").exists()


def test_shell_runs_statements_over_lines_and_lists_tables(built: LoadedProject) -> None:
    result = ok(hw("shell", "--csv", "-p", built.root, stdin="select 1 as a;\n.tables\nselect\n  2 as b\n;\nselect 3 as c"))
    assert result.stdout.splitlines() == ["a", "1", "schema,table,columns,rows", f"main,flake_rate_weekly,11,{len(published_rows(built))}", "b", "2", "c", "3"]
    assert "Unknown command .nope" in user_error(hw("shell", "-p", built.root, stdin=".nope\n"))


def test_shell_on_a_terminal_prompts_and_answers(built: LoadedProject) -> None:
    """Typed at the prompt: a statement over two lines, an error that does not end the session, .quit."""
    main_fd, terminal = pty.openpty()
    process = subprocess.Popen([*HEADWATER, "shell", "-p", str(built.root)], env=cli_env(**ENV), stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = b""

    def until(text: bytes, seconds: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while text not in seen:
            assert time.monotonic() < deadline, f"no {text!r} on the terminal; so far: {seen!r}"
            ready, _, _ = select.select([main_fd], [], [], 0.2)
            if ready:
                seen += os.read(main_fd, 65536)

    try:
        until(b"sql> ")
        os.write(main_fd, b"select 6 * 7\n")
        until(b"...> ")
        os.write(main_fd, b"  as answer;\n")
        until(b"42")
        os.write(main_fd, b"drop table flake_rate_weekly;\n")
        until(b"read-only")
        os.write(main_fd, b".quit\n")
        assert process.wait(timeout=30) == 0, seen
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main_fd)
    assert b"answer" in seen and b"Connected read-only to the published snapshot" in seen


def test_query_raw_reads_the_build_database_and_waits_for_no_run(built: LoadedProject) -> None:
    rows = json.loads(ok(hw("query", "select count(*) as n from raw_campaign.signups", "--raw", "--json", "-p", built.root)).stdout)
    assert rows == [{"n": source_count(built, "signups")}]
    assert "Catalog Error" in user_error(hw("query", "select * from raw_campaign.signups", "-p", built.root))  # not in the published data
    warehouse = open_warehouse(built.root, built.config.warehouse)
    with warehouse.writer_lock():  # a run in progress
        busy = hw("query", "select 1", "--raw", "-p", built.root)
        assert busy.returncode == ExitCode.BUSY, busy.stderr
        assert "Traceback" not in busy.stderr and "Wait for it to finish" in busy.stderr
        ok(hw("query", "select 1", "-p", built.root))  # the published data never waits


def test_an_organisation_queries_only_its_own_data(tmp_path: Path) -> None:
    install = make_install(tmp_path / "install")
    acme, beta = (install.root / "orgs" / slug for slug in ("acme", "beta"))
    for folder, slug in ((acme, "acme"), (beta, "beta")):
        rows = json.loads(ok(hw("query", "select distinct region from flake_rate_weekly order by 1", "--json", "-p", folder)).stdout)
        assert [r["region"] for r in rows] == sorted(ORG_DATA[slug][0])
    # dbt too runs held to the organisation (its environment reduced), with the profile Headwater wrote.
    debug = hw("dbt", "debug", "-p", acme)
    assert debug.returncode == 0, (debug.stdout, debug.stderr)
    assert str(acme / ".headwater" / "dbt") in debug.stdout and "All checks passed" in debug.stdout
    assert "--profiles-dir cannot be given" in user_error(hw("dbt", "debug", f"--profiles-dir={beta}/.headwater/dbt", "-p", acme))
    theirs = snapshot_of(load_project(beta))
    for sql in (f"attach {literal(str(theirs))} as theirs", f"select * from read_parquet({literal(str(theirs))})", f"select * from glob({literal(str(beta) + '/**')})"):
        assert "outside this project's data" in user_error(hw("query", sql, "-p", acme)), sql


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
    number=st.decimals(min_value=-(10**13), max_value=10**13, places=4, allow_nan=False, allow_infinity=False),
    day=st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
)
def test_values_come_out_as_they_are(built: LoadedProject, text: str, number: decimal.Decimal, day: dt.date) -> None:
    """What --json prints for a value: the same text, the same date, the decimal exactly (a number when a float holds it)."""
    warehouse = open_warehouse(built.root, built.config.warehouse)
    with published_query.session(published_query.published_target(warehouse)) as con:
        result = published_query.run(con, f"select {literal(text)} as t, {number}::decimal(18,4) as d, date {literal(day.isoformat())} as day")
    t, d, shown_day = (published_query.plain(v) for v in result.rows[0])
    assert t == text and shown_day == day.isoformat()
    assert decimal.Decimal(str(d)) == number
    assert json.loads(json.dumps(d)) == d


# --- test ----------------------------------------------------------------------------------------


def test_test_runs_tests_and_checks_without_sync_or_publish(built: LoadedProject) -> None:
    snapshot = snapshot_of(built)
    result = ok(hw("test", "--json", "-p", built.root))
    summary = json.loads(result.stdout)
    assert summary["failed"] == [] and summary["passed"] >= 20
    assert [w["name"] for w in summary["warned"]] == ["statuses_are_fresh"]  # the demo's stale-data warning: exit 0
    db = open_system_db(built)
    try:
        run = get_run(db, built.config.name, summary["run"])
    finally:
        db.close()
    assert run is not None and run.pipeline == "test" and run.status == "success"
    assert [s.name for s in run.steps] == ["dbt:test", "checks"]  # no sync, no build, no publish
    assert {c.name for c in run.checks} >= {"signups_by_region_match_source", "not_null_flake_rate_weekly_organizer"}
    assert snapshot_of(built) == snapshot


def test_test_fails_naming_the_test_on_what_is_built_and_dbt_passes_through(copy: LoadedProject) -> None:
    """A row broken in the build database (as a bad model would leave it): `headwater test` finds it
    without rebuilding anything, and `headwater dbt test` gives dbt's own exit code for it."""
    build = open_warehouse(copy.root, copy.config.warehouse).build_path  # type: ignore[attr-defined]
    with duckdb.connect(str(build)) as con:
        con.execute("update marts.flake_rate_weekly set organizer = null where rowid = (select min(rowid) from marts.flake_rate_weekly)")
    snapshot, published = snapshot_of(copy), published_rows(copy)
    result = hw("test", "-p", copy.root)
    assert result.returncode == ExitCode.RUN_FAILED, (result.stdout, result.stderr)
    assert "FAIL dbt_test not_null_flake_rate_weekly_organizer" in result.stderr
    assert "1 failed" in result.stdout and "headwater logs" in result.stdout
    assert snapshot_of(copy) == snapshot and published_rows(copy) == published  # nothing rebuilt or published
    dbt = hw("dbt", "test", "--select", "flake_rate_weekly", "-p", copy.root)
    assert dbt.returncode == 1, (dbt.stdout, dbt.stderr)
    assert "not_null_flake_rate_weekly_organizer" in dbt.stdout


def test_a_project_never_run_and_a_broken_dbt_project(tmp_path: Path) -> None:
    fresh = make_project(tmp_path / "fresh", 100)
    text = ok(hw("status", "-p", fresh.root)).stdout
    assert "last run: never" in text and "Published: nothing yet" in text
    data = json.loads(ok(hw("status", "--json", "-p", fresh.root)).stdout)
    assert data["published"] is None and data["pipelines"]["flake_rate"]["last_run"] is None
    assert "No pipeline named 'nope'" in user_error(hw("status", "nope", "-p", fresh.root))
    assert "Nothing is built yet" in user_error(hw("test", "-p", fresh.root))
    assert "Nothing has been published yet" in user_error(hw("query", "select 1", "-p", fresh.root))
    (fresh.root / "models" / "broken.sql").write_text("select {{ ref( }}\n")
    assert "could not generate the docs" in user_error(hw("docs", "--no-serve", "-p", fresh.root))


# --- run --select --full-refresh -----------------------------------------------------------------


def sync_modes(project: LoadedProject, run_id: int) -> dict[tuple[str, str], str]:
    db = open_system_db(project)
    try:
        run = get_run(db, project.config.name, run_id)
    finally:
        db.close()
    assert run is not None
    return {(s.name, t["table"]): t["mode"] for s in run.steps if s.name.startswith("sync:") for t in table_stats(s.detail)}


def test_run_select_and_full_refresh(copy: LoadedProject) -> None:
    published = published_rows(copy)
    first = snapshot_of(copy)
    # A selection without the published model: the sync is whole (incremental), the mart is carried over.
    ok(hw("run", "--select", "stg_campaign__regions", "-p", copy.root))
    run = recent_runs_of(copy, 1)[0]
    modes = sync_modes(copy, run.id)
    assert len(modes) == 8 and "full" not in modes.values(), modes
    assert snapshot_of(copy) != first and published_rows(copy) == published
    args = json.loads((copy.root / ".headwater/dbt/target/run_results.json").read_text())["args"]
    assert args["select"] == ["stg_campaign__regions"] and not args.get("full_refresh")
    # --full-refresh: every table reloaded in full, and dbt told so.
    ok(hw("run", "--full-refresh", "--select", "+flake_rate_weekly", "-p", copy.root))
    run = recent_runs_of(copy, 1)[0]
    modes = sync_modes(copy, run.id)
    assert len(modes) == 8 and set(modes.values()) == {"full"}, modes
    args = json.loads((copy.root / ".headwater/dbt/target/run_results.json").read_text())["args"]
    assert args["full_refresh"] is True and args["select"] == ["+flake_rate_weekly"]
    assert published_rows(copy) == published
    # A selection matching nothing is a user error, and nothing is published.
    current = snapshot_of(copy)
    failed = hw("run", "--select", "no_such_model", "-p", copy.root)
    assert failed.returncode == ExitCode.USER_ERROR, (failed.stdout, failed.stderr)
    assert "selects nothing to build" in failed.stderr and failed.stderr.count("selects nothing to build") == 1
    assert snapshot_of(copy) == current


# --- dbt and docs --------------------------------------------------------------------------------


def test_dbt_passes_through_with_the_generated_profile(built: LoadedProject) -> None:
    listed = ok(hw("dbt", "ls", "--resource-type", "model", "--select", "marts", "-p", built.root))
    assert "flake_demo.marts.flake_rate_weekly" in listed.stdout
    assert (built.root / ".headwater/dbt/profiles.yml").is_file()
    bad = hw("dbt", "ls", "--no-such-flag", "-p", built.root)
    assert bad.returncode == 2 and "No such option" in bad.stderr and "Traceback" not in bad.stderr
    with open_warehouse(built.root, built.config.warehouse).writer_lock():
        busy = hw("dbt", "ls", "-p", built.root)
    assert busy.returncode == ExitCode.BUSY and "Another run is already writing" in busy.stderr


@pytest.fixture
def docs_server(built: LoadedProject) -> Iterator[tuple[subprocess.Popen[str], OutputLines]]:
    process = subprocess.Popen([*HEADWATER, "docs", "--port", "0", "-p", str(built.root)], env=cli_env(**ENV), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process, OutputLines(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_docs_builds_and_serves_only_the_docs(built: LoadedProject, docs_server: tuple[subprocess.Popen[str], OutputLines]) -> None:
    process, lines = docs_server
    lines.wait_for("Serving the dbt docs on", 120)
    url = next(line for line in lines.lines if "Serving the dbt docs" in line).split(" on ")[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    index = httpx.get(url, timeout=10)
    assert index.status_code == 200 and "dbt" in index.text.lower()
    catalog = httpx.get(url + "catalog.json", timeout=10).json()
    assert "model.flake_demo.flake_rate_weekly" in catalog["nodes"]
    for path in ("run_results.json", "compiled/", "../profiles.yml", "../../../headwater.yml"):
        assert httpx.get(url + path, timeout=10).status_code == 404, path
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 20
    while process.poll() is None:
        assert time.monotonic() < deadline, "docs did not stop on Ctrl+C"
        time.sleep(0.05)
    assert process.returncode == 0, lines.text()
    built_only = ok(hw("docs", "--no-serve", "-p", built.root)).stdout
    assert str(built.root / ".headwater/dbt/target/index.html") in built_only.replace("\n", "")
