"""The system database (run history) on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, delete, event, func, inspect, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import selectinload

from headwater.errors import ConfigError, HeadwaterError
from headwater.system import Run, RunLog, RunStep, SystemDB, migrate, resolve_url
from headwater.system.db import _alembic_config, open_engine
from headwater.system.models import Base

TABLES = {"runs", "run_steps", "run_logs", "check_results", "incidents", "schedule_state", "users", "organisations", "memberships", "sessions", "login_failures", "secrets", "audit_log", "invitations"}
UTC = dt.UTC
PLUS5 = dt.timezone(dt.timedelta(hours=5, minutes=30))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'system.db'}"
    return request.getfixturevalue("fresh_pg_database")


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = open_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(url: str) -> Iterator[SystemDB]:
    db = SystemDB(url)
    yield db
    db.close()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None
    return head


def db_revision(engine: Engine) -> str | None:
    with engine.connect() as con:
        return MigrationContext.configure(con).get_current_revision()


def a_run(**overrides: object) -> Run:
    values: dict[str, object] = {
        "project": "demo",
        "pipeline": "daily",
        "status": "running",
        "trigger": "cli",
        "started_at": dt.datetime(2024, 3, 10, 1, 30, 15, 123456, tzinfo=UTC),
    }
    values.update(overrides)
    return Run(**values)


# --- migrations ---------------------------------------------------------------------------------


def test_migrate_creates_the_schema_from_empty(engine: Engine) -> None:
    assert set(inspect(engine).get_table_names()) == set()
    assert db_revision(engine) is None
    migrate(engine)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert db_revision(engine) == head_revision()


def test_head_revision_is_the_database_version(db: SystemDB) -> None:
    assert db_revision(db.engine) == head_revision()
    with db.engine.connect() as con:
        assert con.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]


def test_migrate_twice_is_a_no_op(engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as con:
        con.execute(sa.insert(Run.__table__).values(project="p", pipeline="x", status="success", trigger="cli", started_at=dt.datetime(2024, 1, 1, tzinfo=UTC)))
    statements: list[str] = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        migrate(engine)
        migrate(engine)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements, "the listener saw nothing: the check below would be vacuous"
    changes = [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"))]
    assert changes == []
    assert db_revision(engine) == head_revision()
    with engine.connect() as con:
        assert con.execute(select(func.count()).select_from(Run.__table__)).scalar_one() == 1


def test_opening_an_existing_database_keeps_its_history(url: str) -> None:
    first = SystemDB(url)
    with first.session() as session:
        session.add(a_run())
        session.commit()
    first.close()
    second = SystemDB(url)
    try:
        with second.session() as session:
            assert session.scalars(select(Run.project)).all() == ["demo"]
    finally:
        second.close()


def test_models_match_the_migrations(engine: Engine) -> None:
    """A model changed without a migration (or the reverse) shows up here."""
    migrate(engine)
    with engine.connect() as con:
        context = MigrationContext.configure(con, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


def test_model_migration_check_catches_a_drift(engine: Engine) -> None:
    """The comparison above is sensitive: a model column that no migration creates is a difference."""
    migrate(engine)
    drifted = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["runs"].append_column(sa.Column("new_setting", sa.String(20), nullable=True))
    with engine.connect() as con:
        diffs = compare_metadata(MigrationContext.configure(con), drifted)
    assert [(d[0], d[3].name) for d in diffs if d[0] == "add_column"] == [("add_column", "new_setting")]


# --- runs, steps, logs --------------------------------------------------------------------------


def test_runs_steps_and_logs_round_trip(db: SystemDB) -> None:
    started = dt.datetime(2024, 3, 10, 1, 30, 15, 123456, tzinfo=UTC)
    finished = dt.datetime(2024, 3, 10, 7, 1, 0, 500, tzinfo=PLUS5)  # 01:31:00.000500 UTC
    with db.session() as session:
        run = a_run(started_at=started)
        run.steps = [
            RunStep(position=1, name="dbt:build", status="success", started_at=started, finished_at=finished, rows=10, detail='{"models": 3}'),
            RunStep(position=0, name="sync:campaign", status="success", started_at=started, rows=200_000),
        ]
        session.add(run)
        session.flush()
        session.add_all([RunLog(run_id=run.id, at=started, level="info", message="run started"), RunLog(run_id=run.id, at=finished, level="error", message="ünïcode ✓\nline 2")])
        run.status, run.finished_at, run.rows_synced, run.snapshot, run.pid = "success", finished, 200_000, "20240310T013100", 4242
        session.commit()
        run_id = run.id

    with db.session() as session:
        back = session.scalars(select(Run).where(Run.id == run_id).options(selectinload(Run.steps))).one()
        logs = session.scalars(select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.id)).all()

    assert (back.project, back.pipeline, back.status, back.trigger) == ("demo", "daily", "success", "cli")
    assert (back.rows_synced, back.snapshot, back.pid, back.error) == (200_000, "20240310T013100", 4242, None)
    assert back.started_at == started and back.finished_at == finished
    for value in (back.started_at, back.finished_at, *(s.started_at for s in back.steps), *(log.at for log in logs)):
        assert value.tzinfo is UTC or value.utcoffset() == dt.timedelta(0), value
    assert back.finished_at.replace(tzinfo=None) == dt.datetime(2024, 3, 10, 1, 31, 0, 500)  # converted to UTC
    assert back.duration == dt.timedelta(seconds=44, microseconds=877044)
    assert [s.name for s in back.steps] == ["sync:campaign", "dbt:build"]  # ordered by position
    assert back.steps[1].finished_at == finished and back.steps[0].finished_at is None
    assert back.steps[1].detail == '{"models": 3}' and back.steps[0].rows == 200_000
    assert [(log.level, log.message) for log in logs] == [("info", "run started"), ("error", "ünïcode ✓\nline 2")]


def test_stored_datetimes_are_utc_in_the_database(db: SystemDB) -> None:
    """The column holds UTC wall-clock time, so SQL over it (and other readers) agree."""
    with db.session() as session:
        session.add(a_run(started_at=dt.datetime(2024, 6, 1, 12, 0, tzinfo=PLUS5)))
        session.commit()
    with db.engine.connect() as con:
        raw = con.execute(sa.text("SELECT started_at FROM runs")).scalar_one()
    if isinstance(raw, str):  # SQLite returns text to a raw query
        raw = dt.datetime.fromisoformat(raw)
    assert raw.replace(tzinfo=None) == dt.datetime(2024, 6, 1, 6, 30)


def test_a_naive_datetime_is_refused(db: SystemDB) -> None:
    with db.session() as session:
        session.add(a_run(started_at=dt.datetime(2024, 1, 1, 12, 0)))
        with pytest.raises(StatementError) as info:
            session.commit()
    assert isinstance(info.value.orig, ValueError)
    assert "naive" in str(info.value.orig)
    with db.session() as session:
        assert session.scalars(select(Run)).all() == []


def test_required_columns_are_enforced(db: SystemDB) -> None:
    with db.session() as session:
        session.add(Run(project="p", pipeline="x", status="running", started_at=dt.datetime.now(UTC)))  # no trigger
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()


def _run_with_children(db: SystemDB) -> int:
    now = dt.datetime.now(UTC)
    with db.session() as session:
        run = a_run(steps=[RunStep(position=0, name="sync:a", status="success", started_at=now), RunStep(position=1, name="publish", status="success", started_at=now)])
        session.add(run)
        session.flush()
        session.add_all([RunLog(run_id=run.id, at=now, level="info", message=f"line {i}") for i in range(3)])
        session.commit()
        return run.id


def _count(db: SystemDB, model: type[Base], run_id: int) -> int:
    column = model.id if model is Run else model.run_id  # type: ignore[attr-defined]
    with db.engine.connect() as con:
        return con.execute(select(func.count()).select_from(model).where(column == run_id)).scalar_one()


def test_deleting_a_run_in_sql_cascades_to_steps_and_logs(db: SystemDB) -> None:
    """The database itself cascades (on SQLite only with foreign keys switched on)."""
    keep, doomed = _run_with_children(db), _run_with_children(db)
    assert (_count(db, RunStep, doomed), _count(db, RunLog, doomed)) == (2, 3)
    with db.engine.begin() as con:
        con.execute(delete(Run).where(Run.id == doomed))
    assert (_count(db, Run, doomed), _count(db, RunStep, doomed), _count(db, RunLog, doomed)) == (0, 0, 0)
    assert (_count(db, Run, keep), _count(db, RunStep, keep), _count(db, RunLog, keep)) == (1, 2, 3)


def test_deleting_a_run_through_the_orm_cascades(db: SystemDB) -> None:
    run_id = _run_with_children(db)
    with db.session() as session:
        session.delete(session.get(Run, run_id))
        session.commit()
    assert (_count(db, Run, run_id), _count(db, RunStep, run_id), _count(db, RunLog, run_id)) == (0, 0, 0)


def test_a_step_for_a_missing_run_is_refused(db: SystemDB) -> None:
    with db.session() as session:
        session.add(RunStep(run_id=987654, position=0, name="x", status="running", started_at=dt.datetime.now(UTC)))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()


# --- URLs and connection errors -----------------------------------------------------------------


def test_resolve_url_makes_relative_sqlite_paths_relative_to_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    root.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resolved = resolve_url("sqlite:///.headwater/system.db", root)
    assert sa.engine.make_url(resolved).database == str(root / ".headwater" / "system.db")
    assert (root / ".headwater").is_dir()  # made ready for SQLite to create the file
    assert not (elsewhere / ".headwater").exists()
    db = SystemDB(resolved)
    db.close()
    assert (root / ".headwater" / "system.db").is_file()


def test_resolve_url_leaves_absolute_and_memory_sqlite_alone(tmp_path: Path) -> None:
    absolute = f"sqlite:///{tmp_path / 'abs' / 'sys.db'}"
    assert sa.engine.make_url(resolve_url(absolute, tmp_path / "other")).database == str(tmp_path / "abs" / "sys.db")
    assert resolve_url("sqlite://", tmp_path) == "sqlite://"
    assert resolve_url("sqlite:///:memory:", tmp_path) == "sqlite:///:memory:"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://u:s3cret@db.example.com:5432/headwater",
        "postgresql+psycopg://u:p%40ss%2Fword@localhost/hw?sslmode=require",
        "postgresql://relative/path_like_name",
    ],
)
def test_resolve_url_leaves_postgres_urls_alone(tmp_path: Path, url: str) -> None:
    assert resolve_url(url, tmp_path) == url


def test_resolve_url_rejects_a_non_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_url("not a url", tmp_path)
    assert "not a url" in info.value.what and info.value.fix


def test_unreachable_postgres_is_a_clean_error_without_the_password() -> None:
    with pytest.raises(HeadwaterError) as info:
        SystemDB("postgresql+psycopg://u:s3cret@127.0.0.1:1/x")
    error = info.value
    rendered = error.render()
    assert "s3cret" not in rendered and "s3cret" not in str(error)
    assert error.what.startswith("Cannot open the system database") and "127.0.0.1" in error.what
    assert error.why and "\nWhy: " in rendered
    assert error.fix and "\nFix: " in rendered and "system.url" in error.fix
    assert error.__cause__ is None and error.__suppress_context__  # no chained driver error to leak it


@pytest.mark.postgres
def test_wrong_database_name_on_a_live_server_is_a_clean_error(postgres_url: str) -> None:
    url = sa.engine.make_url(postgres_url).set(password="s3cret", database="hw_no_such_database")
    with pytest.raises(HeadwaterError) as info:
        SystemDB(url.render_as_string(hide_password=False))
    rendered = info.value.render()
    assert "hw_no_such_database" in rendered and "s3cret" not in rendered
    assert "Fix: " in rendered


@pytest.mark.postgres
def test_unknown_role_is_a_clean_error(postgres_url: str) -> None:
    url = sa.engine.make_url(postgres_url).set(username="hw_no_such_role", password="s3cret")
    with pytest.raises(HeadwaterError) as info:
        SystemDB(url.render_as_string(hide_password=False))
    rendered = info.value.render()
    assert "hw_no_such_role" in rendered and "s3cret" not in rendered


@pytest.mark.postgres
def test_a_role_without_create_rights_is_a_clean_error(fresh_pg_database: str) -> None:
    """PostgreSQL 15+ gives other roles no CREATE on schema public: a common first setup. The user
    must get what/why/fix, not a driver traceback."""
    role = f"hw_reader_{sa.engine.make_url(fresh_pg_database).database[-8:]}"
    admin = create_engine(fresh_pg_database, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as con:
            con.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD 's3cret'"))
            con.execute(sa.text(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}"))
        url = sa.engine.make_url(fresh_pg_database).set(username=role, password="s3cret").render_as_string(hide_password=False)
        with pytest.raises(HeadwaterError) as info:
            SystemDB(url)
        rendered = info.value.render()
        assert "s3cret" not in rendered
        assert "Fix: " in rendered
    finally:
        with admin.connect() as con:
            con.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


@pytest.mark.postgres
def test_postgres_fixture_gives_separate_empty_databases(fresh_pg_database: str, postgres_url: str) -> None:
    assert sa.engine.make_url(fresh_pg_database).database.startswith("hw_test_")
    assert sa.engine.make_url(fresh_pg_database).database != sa.engine.make_url(postgres_url).database
    engine = create_engine(fresh_pg_database)
    try:
        with engine.connect() as con:
            assert con.execute(sa.text("SELECT current_database()")).scalar_one() == sa.engine.make_url(fresh_pg_database).database
            assert con.execute(sa.text("SELECT inet_server_addr()::text")).scalar_one().startswith("127.0.0.1")
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_missing_postgres_binaries_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's reason for skipping (locally) or failing (in CI) names the fix."""
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    with pytest.raises(pg.Unavailable, match="apt-get install -y postgresql"):
        pg.find_bin_dir()
