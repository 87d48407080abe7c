"""Open the system database and bring its schema up to date."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from headwater.errors import ConfigError, DiskFull, HeadwaterError
from headwater.private import FILE_MODE, create_file, make_folder

if TYPE_CHECKING:
    from alembic.config import Config

    from headwater.config.model import LoadedProject

MIGRATIONS = Path(__file__).parent / "migrations"


def open_system_db(project: LoadedProject) -> SystemDB:
    """The system database ``project`` records its runs in (``system.url``, relative to its folder)."""
    return SystemDB(resolve_url(project.config.system.url, project.root))


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
        make_folder(path.parent)
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
        with open(os.open(f"{engine.url.database}.migrate-lock", os.O_RDWR | os.O_CREAT, FILE_MODE)) as handle:
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


class SystemDBUnusable(HeadwaterError):
    """The system database's file cannot be written, or is damaged: every command needs it."""


def sqlite_path(engine: Engine) -> Path | None:
    """The file of a SQLite system database (None for a server database or an in-memory one)."""
    database = engine.url.database
    return Path(database) if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:") else None


def check_writable(path: Path) -> None:
    """SQLite writes the database file and, in WAL mode, ``-wal`` and ``-shm`` files beside it: both
    the file and its folder must be writable by this process's user. Said before anything is opened,
    naming the file, rather than as "attempt to write a readonly database" on the first write."""
    folder = path.parent
    file_ok = not os.access(path, os.F_OK) or os.access(path, os.W_OK)
    if file_ok and os.access(folder, os.W_OK | os.X_OK):
        return
    elsewhere = "or set system.url in headwater.yml to a writable place"
    if _read_only_mount(folder):
        why, fix = f"the file system under {folder} is mounted read-only", f"Remount it read-write, {elsewhere}."
    elif not file_ok:
        why = f"the file's mode is {stat.filemode(path.stat().st_mode)} and this process runs as uid {os.getuid()}"
        fix = f"Make it writable by the user Headwater runs as (e.g. `chmod u+w {path}`), {elsewhere}."
    else:
        why = f"its folder {folder} cannot be written (SQLite keeps {path.name}-wal and {path.name}-shm beside it)"
        fix = f"Make the folder writable by the user Headwater runs as (e.g. `chmod u+w {folder}`), {elsewhere}."
    raise SystemDBUnusable(f"The system database {path} cannot be written", why=why, fix=fix)


def _read_only_mount(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


CHECK_EVERY = 3600.0  # seconds: a database found intact is not checked again by any process for this long
_checked: set[Path] = set()  # databases this process has found intact
_checked_lock = threading.Lock()


def check_intact(engine: Engine, path: Path) -> None:
    """SQLite's ``PRAGMA quick_check`` (the page structure, not index contents). A database damaged
    mid-file otherwise goes on taking writes, and fails later on some pages only (the runs page, one
    run's log).

    It reads the whole file: ~2 s for 140 MB (20,000 runs with 40 log lines each), ~10 ms for a
    month of daily runs. So it runs once per process, and not even that when any process found the
    file intact within the last hour: the time of the last clean check is the mtime of a stamp file
    beside the database (``system.db.checked``). Damage found later, while running, is still
    explained (`explain`) rather than shown as a bug."""
    stamp = path.with_name(path.name + ".checked")
    with _checked_lock:
        if path in _checked or _recent(stamp):
            _checked.add(path)
            return
        try:
            with engine.connect() as connection:
                problems = [row[0] for row in connection.exec_driver_sql("PRAGMA quick_check(5)")]
        except DBAPIError as exc:
            problems = [str(exc.orig).strip()]
        if problems != ["ok"]:
            raise damaged(path, "; ".join(problems))
        _checked.add(path)
        with contextlib.suppress(OSError):  # a stamp that cannot be written only means checking again
            create_file(stamp)
            os.utime(stamp)


def _recent(stamp: Path) -> bool:
    try:
        return time.time() - stamp.stat().st_mtime < CHECK_EVERY
    except FileNotFoundError:
        return False


def damaged(path: Path | None, detail: str) -> SystemDBUnusable:
    """``path``: None where only the error is known (the file is the one system.url names)."""
    named = str(path) if path else "the file system.url names"
    return SystemDBUnusable(
        f"The system database {path or '(system.url in headwater.yml)'} is damaged",
        why=f"SQLite says: {detail}",
        fix=f"Stop Headwater, move {named} aside (keep it), put the newest copy made by `headwater backup` in its place, then start again. "
        "Runs after that backup are missing from the history; published data is not affected.",
    )


def explain(exc: BaseException) -> HeadwaterError | None:
    """A system database failing after it was opened (its disk filled, it was made read-only or got
    damaged while a server runs), as the error a user can act on; None for anything else."""
    if not isinstance(exc, DBAPIError):
        return None
    text = str(exc.orig).strip()
    lowered = text.lower()
    if "readonly database" in lowered or "read-only" in lowered:
        return SystemDBUnusable("The system database cannot be written", why=text, fix="Make the file in system.url and its folder writable by the user Headwater runs as, then try again.")
    if "malformed" in lowered or "not a database" in lowered:
        return damaged(None, text)
    if "database or disk is full" in lowered:
        return DiskFull("No space left on the disk of the system database", why=text, fix="Free space on the disk that holds the file system.url names, then try again.")
    return None


class SystemDB:
    """The system database of one project: an engine with its schema up to date."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        try:
            path = sqlite_path(self.engine)
            if path is not None:
                check_writable(path)
                if path.exists():
                    check_intact(self.engine, path)
                else:
                    create_file(path)  # 0600: SQLite would make it 0644
            migrate(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()
