"""The PostgreSQL warehouse end to end: the demo pipeline on a real PostgreSQL database, against the
same demo on DuckDB; write-audit-publish when a check in PostgreSQL's dialect fails (a failing dbt test: tests/test_pipeline.py, on both warehouses); reader roles; the writer
lock across project folders and processes; SIGKILL around publish. Measured: 74-96 s together on two
cores while other suites kept the load at 10-20; most of it is dbt, about 4 s a run."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import yaml
from cli_process import OutputLines, cli_env
from demo_project import execute_source, make_project, recent_runs_of
from pg_warehouse import checksum, connect, on_postgres, plain_url, rows, schema_checksums
from sync_harness import random_seed, telling_the_seed, thread_rng
from typer.testing import CliRunner

from headwater.cli.main import app
from headwater.config import LoadedProject, load_project
from headwater.errors import ProjectBusy, RunFailed
from headwater.orchestrate import run_pipeline
from headwater.publish import PublishedData
from headwater.warehouse import WarehouseEngine, open_warehouse

pytestmark = pytest.mark.postgres

MART = "flake_rate_weekly"
SIGNUPS = 1_500
SIGNUP = "INSERT INTO signups SELECT max(signup_id) + 1, 1, min(event_id), '2026-03-01 00:00:00', '2026-03-01 00:00:00' FROM signups"  # one more: the mart changes


def warehouse_of(project: LoadedProject) -> WarehouseEngine:
    return open_warehouse(project.root, project.config.warehouse)


def local_table(project: LoadedProject, table: str = MART) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """The dashboards' copy of a published table, through `PublishedData`: its columns (name, DuckDB
    type) in order, and its rows sorted."""
    reader = PublishedData(warehouse_of(project))
    try:
        with reader.cursor() as cur:
            columns = [(r[0], r[1]) for r in cur.execute(f'DESCRIBE "{table}"').fetchall()]
            found = cur.execute(f'SELECT * FROM "{table}"').fetchall()
    finally:
        reader.close()
    return columns, sorted(found)


def pg_table(url: str, table: str = MART, schema: str = "published") -> tuple[list[str], list[tuple[Any, ...]]]:
    with connect(url) as con:
        cursor = con.execute(f'SELECT * FROM "{schema}"."{table}"')
        names = [d.name for d in cursor.description or []]
        return names, sorted(cursor.fetchall())


def local_state(project: LoadedProject) -> tuple[str, str, str]:
    """The local pointer's text, the snapshot it names and that file's sha256."""
    warehouse = warehouse_of(project)
    snapshot = warehouse.current_snapshot()
    assert snapshot is not None, "nothing published locally"
    pointer = (warehouse.folder / "published" / "CURRENT").read_text()
    return pointer, snapshot.name, hashlib.sha256(snapshot.read_bytes()).hexdigest()


def published_schemas(url: str) -> list[str]:
    """Every schema whose name starts with published (the live one, and any staged or old one left behind)."""
    return [r[0] for r in rows(url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'published%' ORDER BY 1")]


def edit_config(project: LoadedProject, change: Any) -> LoadedProject:
    path = project.root / "headwater.yml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_project(project.root)


# --- 1. the same demo on PostgreSQL and on DuckDB ---------------------------------------------------


def test_the_demo_on_postgres_publishes_what_the_demo_on_duckdb_does(tmp_path: Path, fresh_pg_database: str) -> None:
    on_duckdb = make_project(tmp_path / "duckdb", SIGNUPS, seed=11)
    on_pg = on_postgres(make_project(tmp_path / "postgres", SIGNUPS, seed=11), fresh_pg_database)
    assert (on_pg.root / "data" / "campaign.db").read_bytes() == (on_duckdb.root / "data" / "campaign.db").read_bytes()

    pg_outcome, duck_outcome = run_pipeline(on_pg), run_pipeline(on_duckdb)
    assert pg_outcome.run.status == duck_outcome.run.status == "success"
    assert pg_outcome.published == duck_outcome.published and pg_outcome.published[MART] > 50

    # Row for row, every column, floats exactly: both engines compute flake_rate as one IEEE double
    # division of the same two integers (correctly rounded in both), so no tolerance is needed.
    duck_columns, duck_rows = local_table(on_duckdb)
    pg_local_columns, pg_local_rows = local_table(on_pg)
    assert pg_local_columns == duck_columns
    assert pg_local_rows == duck_rows
    assert any(0 < r[8] < 1 for r in duck_rows), "no fractional flake rate: the float comparison would prove little"

    # PostgreSQL's `published` schema holds what the dashboards' local copy holds, column by column.
    names, pg_rows = pg_table(fresh_pg_database)
    assert names == [c for c, _ in duck_columns]
    assert pg_rows == pg_local_rows
    types = rows(fresh_pg_database, "SELECT data_type FROM information_schema.columns WHERE table_schema = 'published' AND table_name = %s ORDER BY ordinal_position", [MART])
    assert [t for (t,) in types] == ["date", "text", "text", "bigint", "bigint", "bigint", "bigint", "bigint", "double precision", "boolean", "bigint"]
    assert published_schemas(fresh_pg_database) == ["published"]
    # only the publishable models are published (the demo publishes marts/)
    assert set(schema_checksums(fresh_pg_database, "published")) == {MART}

    # `headwater export` reads the local copy: the same CSV from both projects
    exports = {}
    for project in (on_pg, on_duckdb):
        done = CliRunner().invoke(app, ["export", MART, "-p", str(project.root), "-o", str(tmp_path / f"{project.root.name}.csv")])
        assert done.exit_code == 0, done.output
        lines = (tmp_path / f"{project.root.name}.csv").read_text().splitlines()
        exports[project.root.name] = (lines[0], sorted(lines[1:]))
    assert exports["postgres"] == exports["duckdb"]
    assert len(exports["postgres"][1]) == len(pg_rows)


def test_dashboards_and_downloads_on_a_postgres_warehouse_keep_row_level_rules(tmp_path: Path, fresh_pg_database: str) -> None:
    """The web app reads the local copy a PostgreSQL publish made, as it reads a DuckDB snapshot: a
    member limited to one region sees that region only, in chart data and downloads, and an
    unlimited member every region PostgreSQL published."""
    from conftest_web import FAST_HASHER, PASSWORD
    from fastapi.testclient import TestClient

    from headwater.system import open_system_db
    from headwater.system.accounts import Accounts
    from headwater.web import create_app
    from headwater.web.auth import LOGIN_CSRF_COOKIE, AuthSettings

    project = on_postgres(make_project(tmp_path / "web", SIGNUPS, seed=5), fresh_pg_database)
    with open(project.root / "dashboards" / "flake_rate.yml", "a") as handle:
        handle.write("row_filters:\n  - {column: region, attribute: region}\n")
    project = load_project(project.root)
    assert run_pipeline(project).run.status == "success"
    regions = sorted({r[0] for r in rows(fresh_pg_database, f"SELECT region FROM published.{MART}")})
    assert len(regions) > 2
    mine = regions[1]
    db = open_system_db(project)
    try:
        accounts = Accounts(db, hasher=FAST_HASHER)
        accounts.create_user("one@example.org", PASSWORD, "viewer", attributes={"region": [mine]})
        accounts.create_user("all@example.org", PASSWORD, "viewer")
    finally:
        db.close()
    app = create_app(project, AuthSettings(hasher=FAST_HASHER))
    seen: dict[str, tuple[set[str], set[str]]] = {}
    for email in ("one@example.org", "all@example.org"):
        with TestClient(app) as client:
            client.get("/login")
            signed_in = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE)}, follow_redirects=False)
            assert signed_in.status_code == 303
            chart = client.get("/api/dashboards/flake_rate/charts/0")
            download = client.get(f"/tables/{MART}.csv")
            assert chart.status_code == download.status_code == 200
            header, *lines = download.text.splitlines()
            column = [name.strip('"').lstrip("\ufeff") for name in header.split(",")].index("region")
            seen[email] = ({row[1] for row in chart.json()["rows"]}, {line.split(",")[column].strip('"') for line in lines})
    assert seen["one@example.org"] == ({mine}, {mine})
    assert seen["all@example.org"][1] == set(regions) and seen["all@example.org"][0] <= set(regions) and len(seen["all@example.org"][0]) > 1


def test_numbers_without_precision_reach_the_dashboards_copy_and_exports_exactly(tmp_path: Path, fresh_pg_database: str) -> None:
    """A published ``numeric`` without precision (a sum, a division) is exact in PostgreSQL; DuckDB's
    scanner would read it as DOUBLE. The local copy reads it as numeric(38, s) instead, so exports
    show every digit; a column wider than 38 digits stays DOUBLE (and the log says so)."""
    project = on_postgres(make_project(tmp_path / "numbers", SIGNUPS, seed=5), fresh_pg_database)
    (project.root / "models" / "marts" / "exact_numbers.sql").write_text(
        "select 1 as id, cast(1 as numeric) / 3 as third, cast('12345678901234567890.12' as numeric) as big, cast('-0.5' as numeric) as half, "
        "cast('1234567890123456789012345678901234567890' as numeric) as too_wide\n"
    )
    assert run_pipeline(project).run.status == "success"
    assert rows(fresh_pg_database, "SELECT third::text, big::text FROM published.exact_numbers") == [("0.33333333333333333333", "12345678901234567890.12")]
    out = tmp_path / "numbers.csv"
    done = CliRunner().invoke(app, ["export", "exact_numbers", "-p", str(project.root), "-o", str(out)])
    assert done.exit_code == 0, done.output
    header, line = out.read_text().lstrip("\ufeff").splitlines()
    values = dict(zip([h.strip('"') for h in header.split(",")], [v.strip('"') for v in line.split(",")], strict=True))
    assert values["third"] == "0.33333333333333333333" and values["big"] == "12345678901234567890.12" and values["half"] == "-0.5"
    assert values["too_wide"] != "1234567890123456789012345678901234567890" and abs(float(values["too_wide"]) / 1.2345678901234568e39 - 1) < 1e-12  # beyond 38 digits: DOUBLE, as documented


# --- 2. write-audit-publish: a failing check in PostgreSQL's dialect changes nothing ---------------------

POSTGRES_CHECK = {
    "name": "signups_by_region_in_postgres",
    "type": "reconcile",
    "severity": "error",
    "left": {"source": "campaign", "sql": "select r.name, count(*) from signups s join events e using (event_id) join locations l using (location_id) join regions r using (region_id) group by r.name"},
    # PostgreSQL's dialect (::numeric), and version() says 'PostgreSQL ...' only there: run
    # anywhere else, every key would be missing on the right and the check would fail.
    "right": {"sql": "select region, sum(total_signups)::numeric from marts.flake_rate_weekly where version() like 'PostgreSQL %' group by region"},
}


def test_a_failing_check_in_postgres_dialect_leaves_published_as_it_was(tmp_path: Path, fresh_pg_database: str) -> None:
    url = fresh_pg_database
    project = on_postgres(make_project(tmp_path / "demo", SIGNUPS), url)
    project = edit_config(project, lambda data: data["pipelines"]["flake_rate"]["checks"].append(POSTGRES_CHECK))
    first = run_pipeline(project)
    assert first.run.status == "success"
    checks = {c.name: c for c in _checks_of(project, first.run.id)}
    assert checks["signups_by_region_in_postgres"].status == "pass", "the PostgreSQL check did not run in PostgreSQL"

    def state() -> tuple[Any, ...]:
        """published (its table's checksum and identity, every table's checksum, the schemas) and the local pointer and snapshot."""
        oid = rows(url, "SELECT to_regclass(%s)::oid", [f"published.{MART}"])[0][0]
        return checksum(url, "published", MART), oid, schema_checksums(url, "published"), published_schemas(url), local_state(project)

    before = state()
    assert before[0] is not None and before[1] is not None

    # (A failing dbt test leaving published as it was: tests/test_pipeline.py, on both warehouses.)
    # One sign-up more, the PostgreSQL check now disagrees by one sign-up in one region.
    execute_source(project, SIGNUP)

    def off_by_one(data: dict[str, Any]) -> None:
        check = data["pipelines"]["flake_rate"]["checks"][-1]
        check["right"]["sql"] = check["right"]["sql"].replace("::numeric", "::numeric + (region = (select min(region) from marts.flake_rate_weekly))::int")

    project = edit_config(project, off_by_one)
    with pytest.raises(RunFailed) as failure:
        run_pipeline(project)
    assert "signups_by_region_in_postgres" in failure.value.render()
    failed = recent_runs_of(project)[0]
    check = next(c for c in _checks_of(project, failed.id) if c.name == "signups_by_region_in_postgres")
    # one key differs: the version() filter kept every row, so the query ran in PostgreSQL
    assert check.status == "fail" and (check.observed or "").startswith("1 of ") and "difference 1" in (check.message or "")
    assert [s.name for s in failed.steps][-1] == "checks"
    assert state() == before
    assert checksum(url, "marts", MART) != before[0]  # dbt built new rows: there was something to publish


def _checks_of(project: LoadedProject, run_id: int) -> list[Any]:
    from headwater.services.runs import get_run
    from headwater.system import open_system_db

    db = open_system_db(project)
    try:
        return list(get_run(db, project.config.name, run_id).checks)
    finally:
        db.close()


def test_a_table_carried_over_is_what_postgres_published_even_after_a_failed_local_switch(tmp_path: Path, fresh_pg_database: str) -> None:
    """A pipeline building part of the project carries the other published tables over. A publish
    can commit in PostgreSQL and then fail to switch the dashboards' copy (a full disk, a kill, here
    a folder where the pointer's temporary file goes): the next publish must still carry over, in
    both places, the table PostgreSQL published."""
    url = fresh_pg_database
    project = on_postgres(make_project(tmp_path / "demo", 300), url)
    (project.root / "models" / "marts" / "signups_total.sql").write_text("select count(*) as signups from {{ ref('stg_campaign__signups') }}\n")
    project = edit_config(project, lambda data: data["pipelines"].update(weekly_only={"sources": ["campaign"], "select": MART, "publish": ["marts"]}))
    run_pipeline(project, "flake_rate")
    assert local_table(project, "signups_total")[1] == pg_table(url, "signups_total")[1] == [(300,)]

    execute_source(project, SIGNUP)
    blocker = project.root / ".headwater" / "warehouse" / "published" / "CURRENT.next"
    blocker.mkdir()
    with pytest.raises(RunFailed) as failure:
        run_pipeline(project, "flake_rate")
    # said as it is: PostgreSQL has the new tables, the dashboards the old ones until the next run
    said = failure.value.render()
    assert "left as it was" not in said and "signups_total" in said and "IsADirectoryError" in said
    assert "dashboards' copy" in said and "next successful run" in said
    assert "publish" in recent_runs_of(project)[0].error and recent_runs_of(project)[0].status == "failed"
    assert pg_table(url, "signups_total")[1] == [(301,)]  # committed in PostgreSQL...
    assert local_table(project, "signups_total")[1] == [(300,)]  # ...the dashboards' copy not switched
    blocker.rmdir()

    assert run_pipeline(project, "weekly_only").run.status == "success"
    assert recent_runs_of(project)[0].pipeline == "weekly_only"
    assert pg_table(url, "signups_total")[1] == [(301,)]  # carried over in PostgreSQL
    assert local_table(project, "signups_total")[1] == [(301,)]  # and in the local copy: the same table
    assert local_table(project)[1] == pg_table(url)[1]


# --- 3. reader roles ----------------------------------------------------------------------------------

READER_ROLES = ["bi_early", "bi_reader"]


@pytest.fixture
def owned_pg_database(postgres_url: str) -> Iterator[str]:
    """The URL of a new database owned by a role of its own that is no superuser — LOGIN and
    CREATEROLE, what a warehouse user is given — as that role; afterwards the database, the owner
    and `READER_ROLES` (roles are the server's: they outlive a database) are dropped."""
    suffix = uuid.uuid4().hex[:12]
    owner, name = f"hw_owner_{suffix}", f"hw_test_{suffix}"
    with connect(postgres_url) as admin:
        admin.execute(f'CREATE ROLE "{owner}" LOGIN CREATEROLE')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    parts = urlsplit(plain_url(postgres_url))
    try:
        yield urlunsplit(parts._replace(netloc=f"{owner}@{parts.hostname}:{parts.port}", path=f"/{name}"))
    finally:
        with connect(postgres_url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in [*READER_ROLES, owner]:
                admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_reader_roles_read_published_only_and_never_hold_up_a_publish(tmp_path: Path, owned_pg_database: str) -> None:
    """As a warehouse user that owns its database and may create roles, not as a superuser."""
    url = owned_pg_database
    project = on_postgres(make_project(tmp_path / "demo", SIGNUPS), url)
    warehouse = warehouse_of(project)
    roles = READER_ROLES
    with connect(url) as admin:
        assert admin.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone() == (False, True)
    warehouse.grant_reader("bi_early")  # before anything is published: remembered, granted at publish
    run_pipeline(project)
    warehouse.grant_reader("bi_reader")  # after: granted on the published schema there is
    with connect(url) as admin:
        for role in roles:
            admin.execute(f'ALTER ROLE "{role}" LOGIN')
        others = admin.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('published', 'pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
    assert {"raw_campaign", "raw_roster", "staging", "intermediate", "marts", "_headwater"} <= {s for s, _ in others}
    assert ("_headwater", "sync_state") in others
    for role in roles:
        _assert_reads_only_published(url, role, others)

    # A BI tool's long query (or a session left idle in a transaction) holds its lock on the
    # published table it read. The publish must not wait for it: a publish queued behind it
    # would queue every new reader of `published` behind itself for as long as that lasts.
    old = pg_table(url)
    execute_source(project, SIGNUP)
    long_reader = psycopg.connect(plain_url(url), user="bi_reader", autocommit=True)
    try:
        long_reader.execute("BEGIN")
        assert sorted(long_reader.execute(f"SELECT * FROM published.{MART}").fetchall()) == old[1]
        finished: list[str] = []
        run = threading.Thread(target=lambda: finished.append(_outcome(project)))
        run.start()
        try:
            deadline = time.monotonic() + 120
            while run.is_alive() and time.monotonic() < deadline:
                with psycopg.connect(plain_url(url), user="bi_early", autocommit=True) as other:  # never kept waiting meanwhile
                    other.execute("SET lock_timeout = '5s'")
                    assert other.execute(f"SELECT count(*) FROM published.{MART}").fetchone() in [(len(old[1]),), (len(old[1]) + 1,)]
                time.sleep(0.2)
            waiting = rows(url, "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            assert not run.is_alive(), f"the publish waited for a reader's transaction: {waiting}"
        finally:
            long_reader.execute("ROLLBACK")
            run.join()
        assert finished == ["success"]
        new = pg_table(url)
        assert new != old and new == (old[0], local_table(project)[1])
        # the old tables the long transaction held were renamed aside, not dropped under it
        (retired,) = set(published_schemas(url)) - {"published"}
        assert pg_table(url, schema=retired) == old
    finally:
        long_reader.close()
    for role in roles:  # the new schema swapped in: granted again
        _assert_reads_only_published(url, role, others)

    # Once nobody reads the old tables, the next publish drops them: only `published` is left.
    assert run_pipeline(project).run.status == "success"
    assert published_schemas(url) == ["published"]
    _assert_reads_only_published(url, "bi_reader", others)


def drop_roles(url: str, roles: list[str]) -> None:
    """Roles are the server's, not the database's: they outlive the test's database unless dropped."""
    with connect(url) as admin:
        for role in roles:
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                admin.execute(f'DROP OWNED BY "{role}"')
                admin.execute(f'DROP ROLE "{role}"')


def _outcome(project: LoadedProject) -> str:
    try:
        return run_pipeline(project).run.status
    except Exception as exc:  # noqa: BLE001 - reported by the test
        return repr(exc)


def _assert_reads_only_published(url: str, role: str, others: list[tuple[str, str]]) -> None:
    as_admin = pg_table(url)
    with psycopg.connect(plain_url(url), user=role, autocommit=True) as reader:
        assert reader.execute("SELECT current_user").fetchone() == (role,)
        cursor = reader.execute(f'SELECT * FROM published."{MART}"')
        assert ([d.name for d in cursor.description or []], sorted(cursor.fetchall())) == as_admin
        for schema, table in others:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(f'SELECT * FROM "{schema}"."{table}" LIMIT 1')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("CREATE TABLE published.mine (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute(f'DELETE FROM published."{MART}"')


# --- 4. the writer lock, across project folders and processes ---------------------------------------


HOLD_LOCK = """
import sys, time
from pathlib import Path
from headwater.config import load_project
from headwater.warehouse import open_warehouse

project = load_project(Path(sys.argv[1]))
with open_warehouse(project.root, project.config.warehouse).writer_lock():
    print("holding the lock", flush=True)
    time.sleep(600)
"""


def _folder_on(root: Path, url: str) -> LoadedProject:
    root.mkdir(parents=True)
    (root / "headwater.yml").write_text(f"name: {root.name}\nwarehouse:\n  type: postgres\n  url: {url}\n")
    return load_project(root)


def _busy(project: LoadedProject) -> ProjectBusy:
    """The error taking ``project``'s writer lock raises (the test fails if it is taken)."""
    with pytest.raises(ProjectBusy) as busy, warehouse_of(project).writer_lock():
        pass
    return busy.value


def test_one_writer_per_warehouse_database_across_folders_and_processes(tmp_path: Path, fresh_pg_database: str) -> None:
    url = plain_url(fresh_pg_database)
    first, second = _folder_on(tmp_path / "one", url), _folder_on(tmp_path / "two", url)
    where = warehouse_of(first).where()  # type: ignore[attr-defined]
    assert where.endswith("/" + url.rsplit("/", 1)[1])

    with warehouse_of(first).writer_lock():
        assert where in _busy(second).what
    with warehouse_of(second).writer_lock():  # released: the other folder gets it
        assert where in _busy(first).what

    # A process holding the lock, SIGKILLed: PostgreSQL ends its session, and the lock with it.
    script = tmp_path / "hold.py"
    script.write_text(HOLD_LOCK)
    holder = subprocess.Popen([sys.executable, str(script), str(first.root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
    try:
        OutputLines(holder).wait_for("holding the lock", 60)
        assert where in _busy(second).what
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + 30
        while True:
            try:
                with warehouse_of(second).writer_lock():
                    break
            except ProjectBusy:
                assert time.monotonic() < deadline, "the killed process's lock was never released"
                time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()


# --- 5. SIGKILL around publish ------------------------------------------------------------------------

KILL_READER = "bi_kill_test"


def _paused_in_the_swap(url: str, child: subprocess.Popen[str], seconds: float) -> None:
    """Wait until the child's publish transaction waits for the lock the test holds on the reader
    roles' table: its staged schema is built, the renames and the commit lie ahead."""
    deadline = time.monotonic() + seconds
    with connect(url) as con:
        while not con.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE %s", ["%reader_roles%"]
        ).fetchone():
            assert child.poll() is None, "the child ended before it reached the publish transaction"
            assert time.monotonic() < deadline, "the child never reached the publish transaction"
            time.sleep(0.01)


def test_sigkill_around_publish_leaves_the_old_table_or_the_new_one(tmp_path: Path, fresh_pg_database: str) -> None:
    """`headwater run`'s attempt process SIGKILLed at random moments after dbt finished — during the
    checks, the local copy, the swap's transaction or after it — or while its swap transaction is
    paused on a lock the test holds (a reader role exists, so the swap reads the roles' table
    inside its transaction). The new table is what dbt built into marts, which a publish copies.
    Each round's run follows the previous kill: it waits for the killed run's session to end, syncs
    and builds (it is killed only once dbt finished); a last run, not killed, succeeds."""
    url = fresh_pg_database
    project = on_postgres(make_project(tmp_path / "demo", 1_000), url)
    try:
        warehouse_of(project).grant_reader(KILL_READER)
        run_pipeline(project)
        seed = random_seed(default=20261207)
        rng = thread_rng(seed, "kills")
        anchors = ["after dbt", "in the swap", rng.choice(["after dbt", "in the swap"])]
        rng.shuffle(anchors)
        landed: list[tuple[Any, ...]] = []
        with telling_the_seed(seed):
            for round_, anchor in enumerate(anchors):
                old = (checksum(url, "published", MART), local_table(project)[1], local_state(project))
                execute_source(project, SIGNUP)
                pause = connect(url) if anchor == "in the swap" else None
                if pause is not None:
                    pause.execute("BEGIN")
                    pause.execute("LOCK TABLE _headwater.reader_roles IN ACCESS EXCLUSIVE MODE")
                command = [sys.executable, "-m", "headwater.orchestrate.child", str(project.root), "flake_rate", "cli", "1", "30", "--show-log"]
                child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env())
                lines = OutputLines(child)
                how = ""
                try:
                    if pause is None:
                        lines.wait_for("Done. PASS=", 120)
                        delay = rng.uniform(0, 0.3)
                        time.sleep(delay)  # the kill's random moment
                        how = f"{delay:.3f}s after dbt"
                    else:
                        _paused_in_the_swap(url, child, 120)
                        if rng.random() < 0.5:
                            how = "while paused"
                        else:
                            delay = rng.uniform(0, 0.008)  # the rest of the transaction takes a few ms
                            pause.execute("ROLLBACK")  # the swap goes on...
                            time.sleep(delay)  # ...for a random moment
                            how = f"{delay:.3f}s after the pause"
                    alive = child.poll() is None
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                finally:
                    child.kill()
                    child.wait()
                    if pause is not None:
                        pause.close()  # the killed child's backend may go on now, and finds its client gone

                new = (checksum(url, "marts", MART), pg_table(url, schema="marts")[1])
                assert new[0] != old[0], "the round's new sign-up changed nothing: the test would prove little"
                after = (checksum(url, "published", MART), local_table(project)[1])
                pg_is = {old[0]: "old", new[0]: "new"}.get(after[0])
                local_is = "old" if after[1] == old[1] else "new" if after[1] == new[1] else None
                landed.append((anchor, how, "killed" if alive else "had ended", pg_is, local_is))
                assert pg_is is not None, f"round {round_}: published is neither the old table nor the new one: {landed[-1]}\n{lines.text()[-3000:]}"
                assert local_is is not None, f"round {round_}: the local copy is neither the old table nor the new one: {landed[-1]}"
                # the local pointer switches only after PostgreSQL committed: never ahead of it
                assert (pg_is, local_is) != ("old", "new"), f"round {round_}: the dashboards show what PostgreSQL never published: {landed[-1]}"
                if how == "while paused":
                    assert (pg_is, local_is) == ("old", "old") and local_state(project) == old[2], f"round {round_}: {landed[-1]}"
                assert "published__next" not in published_schemas(url)

            # The next run succeeds (waiting, as runs do, for a killed run's session to end).
            assert run_pipeline(project, wait_for_lock=30).run.status == "success"
            assert checksum(url, "published", MART) == checksum(url, "marts", MART)
            assert local_table(project)[1] == pg_table(url)[1]
            assert published_schemas(url) == ["published"]
        print("kills (anchor, moment, child, published, local copy):", landed)
    finally:
        drop_roles(url, [KILL_READER])
