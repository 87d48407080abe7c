"""Open the system database and bring its schema up to date."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from headwater.errors import ConfigError, HeadwaterError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def resolve_url(url: str, root: Path) -> str:
    """Relative SQLite paths are relative to the project folder, not the current one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"system.url '{url}' is not a database URL", fix="Use e.g. sqlite:///.headwater/system.db or postgresql+psycopg://user@host/db.") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_absolute():
            path = root / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


def open_engine(url: str) -> Engine:
    sqlite = make_url(url).get_backend_name() == "sqlite"
    # Pooled SQLite connections move between threads (dbt's workers log through them), one at a time.
    engine = create_engine(url, pool_pre_ping=True, connect_args={"check_same_thread": False} if sqlite else {})
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets the web app read run history while a pipeline writes it; FKs make cascades real.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=10000")  # first: switching to WAL waits for other writers too
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alembic_config(connection: object) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """SQLite: taken before connecting, so a second process waits before it touches the file."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with open(f"{engine.url.database}.migrate-lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
    else:
        yield


def _advisory_lock(engine: Engine, connection: Connection) -> None:
    """PostgreSQL: held to the end of the migration's transaction."""
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(7306725761)"))


def _newest_revision() -> str:
    """Migration files are named ``NNNN_*.py`` with revision id ``NNNN``: the newest, without
    importing Alembic (a quarter of a second) when the database is already up to date."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None  # a new database: no alembic_version table yet


def migrate(engine: Engine) -> None:
    """Upgrade to the newest schema; a no-op when already there. Two processes opening a new system
    database at once must not both create its tables, hence the locks."""
    if _current_revision(engine) == _newest_revision():
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    try:
        with _file_lock(engine), engine.begin() as connection:
            _advisory_lock(engine, connection)
            cfg = _alembic_config(connection)
            head = ScriptDirectory.from_config(cfg).get_current_head()
            if MigrationContext.configure(connection).get_current_revision() != head:
                command.upgrade(cfg, "head")
    except DBAPIError as exc:
        raise HeadwaterError(
            f"Cannot open the system database {engine.url.render_as_string(hide_password=True)}",
            why=str(exc.orig).strip(),
            fix="Check system.url in headwater.yml, that the server is running and the credentials are right.",
        ) from None


class SystemDB:
    """The system database of one project: an engine with its schema up to date."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        try:
            migrate(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()
