"""An evil organisation author on an install with many organisations.

Organisation ``acme``'s project files (dbt models, headwater.yml, dashboards) are written to reach
what is not acme's: organisation ``beta``'s warehouse and files, the install's system database and
secret key, the server's environment, the network. Every attempt is refused — by a real dbt run on
real DuckDB files, or when the project is loaded — with a clear error in acme's run log, and
nothing of beta's shows on acme's pages. A one-project install keeps today's freedom.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest
from conftest_web import FAST_HASHER, PASSWORD, form_log_in
from demo_project import make_project
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import QuietHandler, http_server
from sqlalchemy import select
from warehouses import Target, prefixed_sql

from headwater.cli.orgs import point_at_install
from headwater.config import load_project
from headwater.config.confine import Confinement
from headwater.config.model import DuckDBWarehouse
from headwater.errors import ConfigError, RunFailed
from headwater.orchestrate.run import run_pipeline
from headwater.orchestrate.supervise import execute
from headwater.scaffold import set_warehouse
from headwater.system.accounts import Accounts
from headwater.system.models import CheckResult, RunLog, RunStep
from headwater.system.orgs import Install, Organisations, open_project, project_name
from headwater.system.secrets import SecretStore, default_key_file, key_provider
from headwater.warehouse import Warehouse, open_warehouse
from headwater.web import create_app
from headwater.web.auth import AuthSettings

SIGNUPS = 300
BETA_SECRET = "beta-db-password-Zq81"


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    """Two demo organisations, each run once for real; beta has a secret; the install a key file."""
    root = tmp_path_factory.mktemp("tenancy") / "inst"
    install = Install.create(root)
    db = install.open_db()
    try:
        for slug in ("acme", "beta"):
            folder = root / "orgs" / slug
            project = make_project(folder, SIGNUPS, seed=1 if slug == "acme" else 2)
            project.file.write_text(point_at_install(project.file.read_text(), project_name(slug), install.project_system_url()))
            (folder / "seeds").mkdir()
            (folder / "seeds" / "targets.csv").write_text("region,target\nNorth,10\n")  # dbt loads seeds with COPY: inside the folder, allowed
            Organisations(db).create(slug, project_path=str(folder))
        store = SecretStore(db, key_provider(default_key_file(install.system_url, install.root), env={}))
        store.set("beta", "BETA_PG", BETA_SECRET, actor="test")
        Accounts(db, hasher=FAST_HASHER).create_user("viewer@example.org", PASSWORD, "viewer", org="acme")
    finally:
        db.close()
    for slug in ("acme", "beta"):
        run_pipeline(org_project(install, slug))
    return install


def test_an_organisations_whole_pipeline_runs_confined(install: Install) -> None:
    """Sync (SQLite and Excel), dbt (models, snapshots, seeds, tests), checks and publish, all held
    to the organisation's folder: what the fixture's runs did."""
    acme = org_project(install, "acme")
    assert acme.confinement == Confinement("acme", folder_of(install, "acme"), install.root)
    assert published(install, "acme") == "run-000001.duckdb" and published(install, "beta") == "run-000002.duckdb"
    with duckdb.connect(str(folder_of(install, "acme") / ".headwater" / "warehouse" / "build.duckdb"), read_only=True) as build:
        assert build.execute("SELECT target FROM main.targets").fetchall() == [(10,)]
    profile = (folder_of(install, "acme") / ".headwater" / "dbt" / "profiles.yml").read_text()
    assert "headwater.warehouse.duckdb.lockdown" in profile and "settings:" not in profile


def org_project(install: Install, slug: str) -> Any:
    db = install.open_db()
    try:
        return install.load_project(Organisations(db).get(slug))
    finally:
        db.close()


def folder_of(install: Install, slug: str) -> Path:
    return (install.root / "orgs" / slug).resolve()


@pytest.fixture
def acme(install: Install) -> Iterator[Path]:
    """acme's folder; whatever a test adds to it is taken away afterwards."""
    folder = folder_of(install, "acme")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and ".headwater" not in p.parts}
    yield folder
    for path in [p for p in folder.rglob("*") if ".headwater" not in p.parts]:
        if path.is_symlink() or (path.is_file() and path not in before):
            path.unlink()
    for path, content in before.items():
        path.write_bytes(content)


def run_log(install: Install, run_id: int) -> str:
    db = install.open_db()
    try:
        with db.session() as session:
            lines = session.scalars(select(RunLog.message).where(RunLog.run_id == run_id)).all()
            details = session.scalars(select(RunStep.detail).where(RunStep.run_id == run_id)).all()
    finally:
        db.close()
    return "\n".join([*lines, *(d or "" for d in details)])


def last_run_id(install: Install, slug: str) -> int:
    from headwater.system.models import Run

    db = install.open_db()
    try:
        with db.session() as session:
            return session.scalars(select(Run.id).where(Run.project == project_name(slug)).order_by(Run.id.desc())).first()  # type: ignore[return-value]
    finally:
        db.close()


def published(install: Install, slug: str) -> str | None:
    project = org_project(install, slug)
    snapshot = Warehouse(project.root, project.config.warehouse).current_snapshot()
    return snapshot.name if snapshot else None


def sql_text(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# --- dbt models that reach out ---------------------------------------------------------------------


def attacks(install: Install) -> dict[str, tuple[str, str]]:
    """model name -> (its SQL, what the run log must say about it)."""
    root, beta = install.root, folder_of(install, "beta")
    key, system = root / "secret.key", root / "system.db"
    beta_snapshot = beta / ".headwater" / "warehouse" / "published" / "run-000002.duckdb"
    denied = "file system operations are disabled by configuration"
    no_scanner = "but it exists in the sqlite_scanner extension"
    no_loading = "Loading external extensions is disabled"
    locked = "the configuration has been locked"
    return {
        "evil_read_text": (f"select * from read_text({sql_text(key)})", denied),
        "evil_read_blob": (f"select * from read_blob({sql_text(system)})", denied),
        "evil_relative": ("select * from read_text('../../secret.key')", denied),
        "evil_dotdot": (f"select * from read_text({sql_text(folder_of(install, 'acme'))} || '/../../secret.key')", denied),
        "evil_sqlite_secrets": (f"select * from sqlite_scan({sql_text(system)}, 'secrets')", no_scanner),
        "evil_sqlite_users": (f"select * from sqlite_scan({sql_text(system)}, 'users')", no_scanner),
        "evil_attach_system": ("{{ config(pre_hook=\"ATTACH " + sql_text(system) + " AS sysdb (TYPE sqlite)\") }} select 1 as x", no_loading),
        "evil_attach_beta": ("{{ config(pre_hook=\"ATTACH " + sql_text(beta_snapshot) + " AS b (READ_ONLY)\") }} select * from b.flake_rate_weekly", denied),
        "evil_beta_files": (f"select * from read_text({sql_text(beta / 'headwater.yml')})", denied),
        "evil_beta_glob": (f"select * from glob({sql_text(beta)} || '/**')", denied),
        "evil_copy_out": ("{{ config(pre_hook=\"COPY (select 1) TO " + sql_text(root / "pwned.csv") + "\") }} select 1 as x", denied),
        "evil_enable_access": ("{{ config(pre_hook='SET enable_external_access = true') }} select 1 as x", locked),
        "evil_allowed_dirs": ("{{ config(pre_hook=\"SET allowed_directories = ['/']\") }} select 1 as x", locked),
        "evil_reset_lock": ("{{ config(pre_hook='SET lock_configuration = false') }} select 1 as x", locked),
        "evil_temp_dir": ("{{ config(pre_hook=\"SET temp_directory = " + sql_text(root) + "\") }} select 1 as x", locked),
        "evil_install_ext": ("{{ config(pre_hook='INSTALL httpfs') }} select 1 as x", denied),
        "evil_load_ext": ("{{ config(pre_hook='LOAD httpfs') }} select 1 as x", no_loading),
        "evil_getenv": ("select getenv('HEADWATER_SECRET_KEY') as v", "getenv does not exist"),
        "evil_environ": ("select * from read_text('/proc/self/environ')", denied),
    }


class Recorder(QuietHandler):
    requests: ClassVar[list[str]] = []  # every request the server saw, across handler instances

    def do_GET(self) -> None:
        Recorder.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"a\n1\n")


def test_evil_models_reach_nothing_outside_their_organisation(install: Install, acme: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = (install.root / "secret.key").read_text().strip()
    monkeypatch.setenv("HEADWATER_SECRET_KEY_COPY", key)  # in the server's environment, as an operator might have it
    marts = acme / "models" / "marts"
    expected = attacks(install)
    for name, (sql, _) in expected.items():
        (marts / f"{name}.sql").write_text(sql + "\n")
    (marts / "evil_env_var.sql").write_text("select '{{ env_var('HEADWATER_SECRET_KEY_COPY', 'no such variable') }}' as v\n")
    (marts / "evil_python.py").write_text(f"def model(dbt, session):\n    open({str(install.root / 'pwned-by-python')!r}, 'w').write('x')\n    return session.sql('select 1 as x')\n")
    before = published(install, "acme")
    with http_server(Recorder) as url:
        (marts / "evil_network.sql").write_text(f"select * from read_csv('{url}/exfiltrate.csv')\n")
        with pytest.raises(RunFailed, match="dbt build failed"):
            run_pipeline(org_project(install, "acme"))
    log = run_log(install, last_run_id(install, "acme"))
    for name, (_, message) in expected.items():
        assert f"model {name}" in log or f"model marts.{name}" in log or name in log, f"{name} is not in the run log"
        assert message in log, f"{name}: '{message}' is not in the run log"
    assert "Python model evil_python refused" in log and "Fix: write the model in SQL" in log
    assert not (install.root / "pwned-by-python").exists() and not (install.root / "pwned.csv").exists()
    assert Recorder.requests == [] and "file system operations are disabled by configuration" in log  # the URL was refused, never fetched
    assert published(install, "acme") == before  # a failed run publishes nothing
    with duckdb.connect(str(acme / ".headwater" / "warehouse" / "build.duckdb"), read_only=True) as build:
        assert build.execute("SELECT v FROM marts.evil_env_var").fetchone() == ("no such variable",)
    everything = b"".join(p.read_bytes() for p in acme.rglob("*") if p.is_file())
    assert key.encode() not in everything and BETA_SECRET.encode() not in everything


def test_the_same_attack_through_a_run_process_of_its_own(install: Install, acme: Path) -> None:
    """The scheduler's and the web's way: a child process, which confines the project again from
    the install's records (its own files cannot say they are not an organisation's)."""
    (acme / "models" / "marts" / "evil_read_text.sql").write_text(f"select * from read_text({sql_text(install.root / 'secret.key')})\n")
    outcome = execute(org_project(install, "acme"), None, "test")
    assert outcome.status == "failed" and outcome.run_id is not None
    assert "file system operations are disabled by configuration" in run_log(install, outcome.run_id)


def test_checks_sql_is_held_like_the_models(install: Install, acme: Path) -> None:
    text = (acme / "headwater.yml").read_text()
    check = f"""
      - type: reconcile
        name: evil_check
        left: {{sql: "select count(*) from read_text({sql_text(install.root / 'secret.key')})"}}
        right: {{sql: "select 1"}}
"""
    assert "    checks:\n" in text
    (acme / "headwater.yml").write_text(text.replace("    checks:\n", "    checks:" + check, 1))
    with pytest.raises(RunFailed):
        run_pipeline(org_project(install, "acme"))
    assert "file system operations are disabled by configuration" in run_log(install, last_run_id(install, "acme"))


# --- project files that point elsewhere --------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace("path: .headwater/warehouse", "path: ../beta/.headwater/warehouse"), "warehouse.path"),
        (lambda t: t.replace("\ndbt:\n", "\ndbt:\n  project_dir: ../beta\n", 1), "dbt.project_dir"),
        (lambda t: t.replace("path: data/campaign.db", "path: ../../system.db"), "sources.campaign.path"),
        (lambda t: t.replace("path: data/campaign.db", "path: ../beta/data/campaign.db"), "sources.campaign.path"),
    ],
)
def test_paths_outside_the_organisations_folder_are_refused(install: Install, acme: Path, edit: Any, key: str) -> None:
    file = acme / "headwater.yml"
    file.write_text(edit(file.read_text()))
    with pytest.raises(ConfigError) as refused:
        org_project(install, "acme")
    assert key in refused.value.what and "leads outside the organisation's folder" in refused.value.what
    assert str(acme) in (refused.value.why or "") and key in (refused.value.fix or "")


def test_file_sources_and_keys_outside_are_refused(install: Install, acme: Path) -> None:
    file = acme / "headwater.yml"
    original = file.read_text()
    extra = {
        "sources.stolen.path": "  stolen:\n    type: csv\n    path: ../beta/data/*.csv\n",
        "sources.stolen.tables.t.path": "  stolen:\n    type: csv\n    tables:\n      t: {path: /etc/passwd}\n",
        "sources.stolen.credentials": "  stolen:\n    type: google_sheets\n    spreadsheet_id: 1AbCdEfGhIjKlMnOp\n    credentials: ~/.config/key.json\n    range: A1:B2\n",
        "sources.stolen.ssh_tunnel.private_key": "  stolen:\n    type: postgres\n    url: postgresql://x@db/x\n    ssh_tunnel: {host: bastion, user: u, private_key: ~/.ssh/id_ed25519}\n",
    }
    for key, source in extra.items():
        file.write_text(original.replace("\nsources:\n", "\nsources:\n" + source, 1))
        with pytest.raises(ConfigError) as refused:
            org_project(install, "acme")
        assert key in refused.value.what, refused.value.render()


def test_dbt_folders_and_local_packages_outside_are_refused(install: Install, acme: Path) -> None:
    dbt_project = acme / "dbt_project.yml"
    original = dbt_project.read_text()
    dbt_project.write_text(original + "\nseed-paths: ['seeds', '../beta/data']\n")
    with pytest.raises(ConfigError, match="seed-paths"):
        org_project(install, "acme")
    dbt_project.write_text(original)
    for file in ("packages.yml", "dependencies.yml"):  # dbt reads either
        (acme / file).write_text("packages:\n  - local: ../beta\n")
        with pytest.raises(ConfigError, match=r"packages\[0\].local") as refused:
            org_project(install, "acme")
        assert file in refused.value.render()
        (acme / file).unlink()


def test_a_symlink_leading_out_is_refused(install: Install, acme: Path) -> None:
    (acme / "data" / "install").symlink_to(install.root)
    with pytest.raises(ConfigError, match="symbolic link leading outside") as refused:
        org_project(install, "acme")
    assert "Remove the link" in (refused.value.fix or "")
    (acme / "data" / "install").unlink()
    (acme / "data" / "inside").symlink_to(acme / "models")  # a link within the folder is fine
    assert org_project(install, "acme").confinement == Confinement("acme", acme, install.root)


def test_the_servers_environment_is_not_an_organisations(install: Install, acme: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_SECRET_KEY_COPY", "k" * 20)
    file = acme / "headwater.yml"
    file.write_text(file.read_text() + "web:\n  base_url: https://x/${HEADWATER_SECRET_KEY_COPY}\n")
    with pytest.raises(ConfigError, match=r"\$\{HEADWATER_SECRET_KEY_COPY\} reads the server's environment") as refused:
        org_project(install, "acme")
    assert "headwater secrets set HEADWATER_SECRET_KEY_COPY --org acme" in (refused.value.fix or "")


def test_an_organisation_folder_holding_the_install_is_refused(install: Install, tmp_path: Path) -> None:
    holder = Install.create(tmp_path / "outer" / "inst")
    project = load_project(folder_of(install, "acme"))
    with pytest.raises(ConfigError, match="holds the install's"):
        holder.confine("acme", project.model_copy(update={"root": tmp_path / "outer"}))


def test_commands_on_an_organisations_folder_are_confined_and_a_lone_project_is_free(install: Install, tmp_path: Path) -> None:
    assert open_project(folder_of(install, "beta")).confinement == Confinement("beta", folder_of(install, "beta"), install.root)
    lone = make_project(tmp_path / "lone", 100)
    lone.file.write_text(lone.file.read_text().replace("path: .headwater/warehouse", "path: ../elsewhere/warehouse"))
    free = open_project(lone.root)
    assert free.confinement is None and Warehouse(free.root, free.config.warehouse).folder == (tmp_path / "elsewhere" / "warehouse").resolve()


def test_a_lone_projects_models_keep_todays_freedom(tmp_path: Path) -> None:
    outside = tmp_path / "shared.csv"
    outside.write_text("a\n42\n")
    lone = make_project(tmp_path / "lone", 100)
    (lone.root / "models" / "marts" / "reads_outside.sql").write_text(f"select * from read_csv({sql_text(outside)})\n")
    run_pipeline(lone)
    snapshot = Warehouse(lone.root, lone.config.warehouse).current_snapshot()
    with duckdb.connect(str(snapshot), read_only=True) as con:
        assert con.execute("SELECT a FROM reads_outside").fetchall() == [(42,)]


# --- the web pages --------------------------------------------------------------------------------


def test_nothing_of_beta_shows_on_acmes_pages(install: Install, acme: Path) -> None:
    board = acme / "dashboards" / "evil.yml"
    beta_snapshot = folder_of(install, "beta") / ".headwater" / "warehouse" / "published" / "run-000002.duckdb"
    board.write_text(
        "title: Evil\ntable: flake_rate_weekly\ncharts:\n"
        f"  - type: table\n    title: beta\n    sql: select * from read_text({json.dumps(str(beta_snapshot))[1:-1]!r})\n"
    )
    beta_regions = _regions(beta_snapshot)
    with TestClient(create_app(install, AuthSettings(hasher=FAST_HASHER))) as viewer:
        form_log_in(viewer, "viewer@example.org")
        chart = viewer.get("/o/acme/api/dashboards/evil/charts/0")
        responses = [viewer.get(p) for p in ("/o/acme/", "/o/acme/dashboards/flake_rate", "/o/acme/tables/flake_rate_weekly.csv", "/o/acme/dashboards/evil")]
        assert viewer.get("/o/beta/dashboards/flake_rate").status_code == 404
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    assert chart.status_code == 500 and "file system operations are disabled by configuration" in chart.json()["error"]["why"]
    for text in [chart.text, *(r.text for r in responses)]:
        assert not [r for r in beta_regions if r in text and r not in _regions_of_acme(install)]


def _regions(snapshot: Path) -> set[str]:
    with duckdb.connect(str(snapshot), read_only=True) as con:
        return {r[0] for r in con.execute("SELECT DISTINCT organizer FROM flake_rate_weekly").fetchall()}


def _regions_of_acme(install: Install) -> set[str]:
    acme = folder_of(install, "acme") / ".headwater" / "warehouse" / "published"
    return _regions(acme / (acme / "CURRENT").read_text().strip())


def test_secret_rows_stay_encrypted_in_the_system_database(install: Install) -> None:
    with sqlite3.connect(install.root / "system.db") as con:
        stored = b"".join(bytes(r[0]) for r in con.execute("SELECT ciphertext FROM secrets"))
    assert BETA_SECRET.encode() not in stored and os.path.getsize(install.root / "system.db") > 0


# --- sources through DuckDB's scanners still work when confined -------------------------------------


def _org_with(tmp_path: Path, slug: str, sources: str, checks: str, warehouse: Target | None = None) -> tuple[Install, Any]:
    install = Install.create(tmp_path / "inst")
    folder = install.root / "orgs" / slug
    folder.mkdir(parents=True, exist_ok=True)
    on = f"warehouse:\n  type: postgres\n  url: {json.dumps(warehouse.url)}\n" if warehouse is not None and warehouse.postgres else ""
    if warehouse is not None and warehouse.bigquery:  # checks' warehouse SQL names the prefixed datasets, as its author writes it there
        on, checks = warehouse.block(), prefixed_sql(checks, warehouse.prefix)
    (folder / "headwater.yml").write_text(
        f"name: {project_name(slug)}\nsystem:\n  url: {json.dumps(install.project_system_url())}\n{on}sources:\n{sources}"
        f"pipelines:\n  p:\n    checks:\n{checks}"
    )
    db = install.open_db()
    try:
        Organisations(db).create(slug, project_path=str(folder))
    finally:
        db.close()
    return install, org_project(install, slug)


def _sync_and_check(project: Any) -> list[Any]:
    from headwater.checks import run_checks
    from headwater.orchestrate.sync import run_sync

    run_sync(project)
    warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
    con = warehouse.connect_build()
    try:
        return run_checks(project, project.config.pipelines["p"].checks, con, warehouse=warehouse)
    finally:
        con.close()


# On BigQuery a check's warehouse SQL runs in Google's service, nowhere near the install's files, and
# GoogleSQL has no read_text or read_blob (https://cloud.google.com/bigquery/docs/reference/standard-sql/functions-all):
# there is no escape to refuse. The emulator differs from BigQuery here: it runs GoogleSQL on DuckDB, so
# read_text reads the host's file. The escape assertion is therefore left out on BigQuery (the sync and the
# confined check still run there).
ESCAPE_ON_BIGQUERY = "no file escape exists on BigQuery; the emulator (DuckDB inside) would read the file"


def _escape_refused(outcome: Any, function: str, warehouse: Target) -> bool:
    """A check reaching for a file through the warehouse: DuckDB's are disabled in a confined run;
    on PostgreSQL and BigQuery the SQL runs there, which has no such function."""
    message = outcome.message or ""
    assert not warehouse.bigquery, "see ESCAPE_ON_BIGQUERY"
    if warehouse.postgres:
        return outcome.status == "error" and function in message and "does not exist" in message
    return outcome.status == "error" and "file system operations are disabled by configuration" in message


@pytest.mark.postgres
def test_a_postgres_source_syncs_and_is_checked_in_a_confined_run(tmp_path: Path, fresh_pg_database: str, warehouse: Target) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(fresh_pg_database)
    with engine.begin() as con:
        con.execute(text("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')"))
    engine.dispose()
    url = fresh_pg_database.replace("postgresql+psycopg://", "postgresql://")
    escape = f"select count(*) from read_text({sql_text(tmp_path / 'inst' / 'system.db')})"
    _install, project = _org_with(
        tmp_path, "pgorg", f"  crm: {{type: postgres, url: {json.dumps(url)}}}\n",
        "      - {type: reconcile, name: same, left: {source: crm, sql: 'select count(*) from items'}, right: {sql: 'select count(*) from raw_crm.items'}}\n"
        f"      - {{type: reconcile, name: escape, left: {{sql: {json.dumps(escape)}}}, right: {{sql: 'select 1'}}}}\n",
        warehouse,
    )
    assert project.confinement is not None and project.config.warehouse.type == warehouse.kind
    outcomes = {o.name: o for o in _sync_and_check(project)}
    assert outcomes["same"].status == "pass", outcomes["same"].message
    if not warehouse.bigquery:  # ESCAPE_ON_BIGQUERY
        assert _escape_refused(outcomes["escape"], "read_text", warehouse), outcomes["escape"].message


def test_a_sqlite_source_syncs_and_its_checks_cannot_attach_the_install(tmp_path: Path, warehouse: Target) -> None:
    install = Install.create(tmp_path / "inst")
    data = install.root / "orgs" / "lite" / "data"
    data.mkdir(parents=True)
    with sqlite3.connect(data / "app.db") as con:
        con.execute("CREATE TABLE items (id integer primary key, name text)")
        con.executemany("INSERT INTO items VALUES (?, ?)", [(1, "a"), (2, "b")])
    (data / "more.csv").write_text("id,name\n1,x\n")
    _, project = _org_with(
        tmp_path, "lite", "  app: {type: sqlite, path: data/app.db}\n  sheet: {type: csv, path: data/more.csv}\n",
        "      - {type: reconcile, name: same, left: {source: app, sql: 'select count(*) from items'}, right: {sql: 'select count(*) from raw_app.items'}}\n"
        f"      - {{type: reconcile, name: attach, left: {{source: app, sql: {json.dumps('ATTACH ' + sql_text(install.root / 'system.db') + ' AS sysdb')}}}, right: {{sql: 'select 1'}}}}\n",
        warehouse,
    )
    assert project.confinement is not None and project.config.warehouse.type == warehouse.kind
    outcomes = {o.name: o for o in _sync_and_check(project)}
    assert outcomes["same"].status == "pass", outcomes["same"].message
    assert outcomes["attach"].status == "error" and "too many attached databases" in (outcomes["attach"].message or "")
    assert not list((project.root / ".headwater" / "warehouse" / "work").iterdir())  # file sources worked inside the folder, and cleaned up


@pytest.mark.mysql
def test_a_mysql_source_syncs_and_is_checked_in_a_confined_run(tmp_path: Path, mysql_server: Any, fresh_mysql_database: str, warehouse: Target) -> None:
    with mysql_server.connect(fresh_mysql_database) as con, con.cursor() as cur:
        cur.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        cur.execute("INSERT INTO items VALUES (1, 'a'), (2, 'b')")
        con.commit()
    escape = f"select count(*) from read_blob({sql_text(tmp_path / 'inst' / 'secret.key')})"
    _, project = _org_with(
        tmp_path, "myorg", f"  app: {{type: mysql, url: {json.dumps(mysql_server.url(fresh_mysql_database))}}}\n",
        "      - {type: reconcile, name: same, left: {source: app, sql: 'select count(*) from items'}, right: {sql: 'select count(*) from raw_app.items'}}\n"
        f"      - {{type: reconcile, name: escape, left: {{sql: {json.dumps(escape)}}}, right: {{sql: 'select 1'}}}}\n",
        warehouse,
    )
    assert project.config.warehouse.type == warehouse.kind
    outcomes = {o.name: o for o in _sync_and_check(project)}
    assert outcomes["same"].status == "pass", outcomes["same"].message
    if not warehouse.bigquery:  # ESCAPE_ON_BIGQUERY
        assert _escape_refused(outcomes["escape"], "read_blob", warehouse), outcomes["escape"].message


def test_a_run_started_for_an_organisation_is_never_run_unconfined(install: Install, tmp_path: Path) -> None:
    lone = make_project(tmp_path / "lone", 100)
    with pytest.raises(ConfigError, match="is not the project of any organisation"):
        open_project(lone.root, install.root)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "data", "acme", "acme-evil", "orgs", "*", "**", "x.csv"]), min_size=1, max_size=6))
def test_a_path_is_accepted_exactly_when_it_stays_inside_the_folder(parts: list[str]) -> None:
    """Against an oracle that normalises the text (no symlinks here): inside the folder, or refused."""
    from headwater.config.confine import _inside

    folder = Path("/srv/inst/orgs/acme")
    confinement = Confinement("acme", folder)
    value = "/".join(parts)
    fixed = parts[: next((i for i, p in enumerate(parts) if "*" in p), len(parts))]
    resolved = os.path.normpath(os.path.join(str(folder), *fixed)) if fixed else str(folder)
    expected_inside = resolved == str(folder) or resolved.startswith(str(folder) + "/")
    try:
        _inside(confinement, "sources.s.path", folder, value, "headwater.yml")
        accepted = True
    except ConfigError as refused:
        accepted = False
        assert "sources.s.path" in refused.what and str(folder) in (refused.fix or "")
    assert accepted == expected_inside, (value, resolved)


# --- what DuckDB 1.4.4 does with these settings (pinned: an upgrade that changes one fails here) -----


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path, Path]]:
    folder, outside = tmp_path / "org", tmp_path / "install"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret.key").write_text("the-install-key")
    with sqlite3.connect(outside / "system.db") as con:
        con.execute("CREATE TABLE users (hash text)")
        con.execute("INSERT INTO users VALUES ('argon2-hash')")
    warehouse = Warehouse(folder, DuckDBWarehouse(), Confinement("org", folder))
    con = warehouse.connect_build()
    yield con, folder, outside
    con.close()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_text('{outside}/secret.key')", "file system operations are disabled"),
        ("SELECT * FROM read_blob('{outside}/../install/secret.key')", "file system operations are disabled"),
        ("SELECT * FROM glob('{outside}/*')", "file system operations are disabled"),
        ("COPY (SELECT 1) TO '{outside}/out.csv'", "file system operations are disabled"),
        ("ATTACH '{outside}/other.duckdb' AS o", "file system operations are disabled"),
        ("SELECT * FROM sqlite_scan('{outside}/system.db', 'users')", "Loading external extensions is disabled"),  # not autoloaded
        ("LOAD sqlite", "Loading external extensions is disabled"),
        ("INSTALL httpfs", "file system operations are disabled"),
        ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "file system operations are disabled"),
        ("SET enable_external_access = true", "the configuration has been locked"),
        ("SET allowed_directories = ['/']", "the configuration has been locked"),
        ("SET allowed_paths = ['{outside}/secret.key']", "the configuration has been locked"),
        ("RESET lock_configuration", "the configuration has been locked"),
        ("SET temp_directory = '{outside}'", "the configuration has been locked"),
        ("SET python_enable_replacements = true", "the configuration has been locked"),
        ("SELECT getenv('HOME')", "getenv does not exist"),
    ],
)
def test_a_locked_connection_refuses(locked: Any, sql: str, message: str) -> None:
    con, _folder, outside = locked
    with pytest.raises(duckdb.Error, match=re.escape(message)):
        con.execute(sql.format(outside=outside)).fetchall()


def test_a_locked_connection_works_inside_its_folder(locked: Any) -> None:
    con, folder, _outside = locked
    con.execute(f"COPY (SELECT 42 AS a) TO '{folder}/inside.csv'")
    assert con.execute(f"SELECT a FROM read_csv('{folder}/inside.csv')").fetchall() == [(42,)]
    con.execute(f"ATTACH '{folder}/other.duckdb' AS o")


def test_why_no_scanner_is_loaded_where_an_organisations_sql_runs(locked: Any, tmp_path: Path) -> None:
    """DuckDB's sqlite scanner opens files itself, past allowed_directories: loaded before the
    lock, it reads the install's system database. So connections that run an organisation's SQL
    load none (a sync's, which runs Headwater's SQL only, does)."""
    _con, folder, outside = locked
    sync = Warehouse(folder, DuckDBWarehouse(path="sync"), Confinement("org", folder)).connect_build(sync_extensions=("sqlite",))
    try:
        assert sync.execute(f"SELECT * FROM sqlite_scan('{outside}/system.db', 'users')").fetchall() == [("argon2-hash",)]
        with pytest.raises(duckdb.Error, match="file system operations are disabled"):
            sync.execute(f"SELECT * FROM read_text('{outside}/secret.key')").fetchall()
    finally:
        sync.close()


def test_a_package_dbt_deps_brings_cannot_lead_out(install: Install, acme: Path, tmp_path: Path) -> None:
    """The folder is checked for links at load; `dbt deps` then writes into it. A git package holding
    a link to the install must stop the run before dbt builds, as such a link in the folder would."""
    import subprocess

    repo = tmp_path / "sneaky_pkg"
    repo.mkdir()
    (repo / "dbt_project.yml").write_text("name: sneaky_pkg\nversion: '1.0.0'\nconfig-version: 2\n")
    (repo / "install").symlink_to(install.root)
    for command in (["init", "-q", "-b", "main"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "pkg"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    (acme / "packages.yml").write_text(f"packages:\n  - git: {repo}\n    revision: main\n")
    with pytest.raises(ConfigError, match="symbolic link leading outside"):
        run_pipeline(org_project(install, "acme"))


@pytest.mark.postgres
def test_an_organisation_on_a_postgres_warehouse_runs_its_sql_in_postgres_only(tmp_path: Path, fresh_pg_database: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a PostgreSQL warehouse, an organisation's SQL runs in PostgreSQL with its own user's
    rights: a reconcile query reaching for DuckDB's file or network functions finds none (the build
    connection's DuckDB is never handed the organisation's SQL), and dbt's ``env_var`` sees none of
    the server's environment — only the warehouse password it was given."""
    warehouse_url = fresh_pg_database.replace("postgresql+psycopg://", "postgresql://")
    monkeypatch.setenv("SERVER_ONLY_SECRET", "server-secret-value-81")
    install = Install.create(tmp_path / "inst")
    folder = install.root / "orgs" / "pgwh"
    project = make_project(folder, SIGNUPS, seed=3)
    text = point_at_install(project.file.read_text(), project_name("pgwh"), install.project_system_url())
    other_db = sql_text(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    scan = f"select count(*) from postgres_scan({other_db}, 'pg_catalog', 'pg_authid')"  # DuckDB's, reaching another database
    project.file.write_text(text)
    set_warehouse(folder, "warehouse:\n  type: postgres\n  url: ${secret:WAREHOUSE_URL}\n")
    pipeline_checks = (
        "      - {type: reconcile, name: same, left: {sql: 'select count(*)::bigint from raw_campaign.signups'}, right: {source: campaign, sql: 'select count(*) from signups'}}\n"
        f"      - {{type: reconcile, name: files, left: {{sql: {json.dumps('select count(*) from read_text(' + sql_text(install.root / 'system.db') + ')')}}}, right: {{sql: 'select 1'}}, severity: warn}}\n"
        f"      - {{type: reconcile, name: network, left: {{sql: {json.dumps(scan)}}}, right: {{sql: 'select 1'}}, severity: warn}}\n"
    )
    project.file.write_text(project.file.read_text().replace("    checks:\n", "    checks:\n" + pipeline_checks, 1))  # before the demo's own checks
    (folder / "models" / "marts" / "environment_seen.sql").write_text("select '{{ env_var(\"SERVER_ONLY_SECRET\", \"hidden\") }}' as value\n")
    db = install.open_db()
    try:
        Organisations(db).create("pgwh", project_path=str(folder))
        SecretStore(db, key_provider(default_key_file(install.system_url, install.root), env={})).set("pgwh", "WAREHOUSE_URL", warehouse_url, actor="test")
    finally:
        db.close()
    loaded = org_project(install, "pgwh")
    assert loaded.confinement is not None and loaded.config.warehouse.type == "postgres"
    run_pipeline(loaded)
    db = install.open_db()
    try:
        with db.session() as session:
            checks = {r.name: r for r in session.scalars(select(CheckResult)).all()}
    finally:
        db.close()
    assert checks["same"].status == "pass", checks["same"].message
    assert checks["files"].status == "error" and "read_text" in (checks["files"].message or "") and "does not exist" in (checks["files"].message or "")
    assert checks["network"].status == "error" and "postgres_scan" in (checks["network"].message or "") and "does not exist" in (checks["network"].message or "")
    import psycopg

    with psycopg.connect(warehouse_url) as pg:
        assert pg.execute("SELECT value FROM published.environment_seen").fetchall() == [("hidden",)]
