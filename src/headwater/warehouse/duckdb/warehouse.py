"""The DuckDB warehouse: one private build database and immutable published snapshots.

DuckDB lets one process write a database file, and while it does no other process may open that file,
even to read. So readers never open the build database. Each successful run writes its publishable
tables into a new snapshot file, and then switches the ``CURRENT`` pointer with an atomic rename.
Readers open the snapshot named by the pointer read-only; snapshots are never written after the switch,
so any number of processes read them while the next run builds.

    <warehouse>/build.duckdb            raw_<source> schemas, dbt's staging/intermediate/marts
    <warehouse>/published/CURRENT       name of the current snapshot file
    <warehouse>/published/<name>.duckdb one immutable file per successful run
    <warehouse>/.lock                   held by the one run allowed to write
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import duckdb

from headwater.config.confine import Confinement
from headwater.config.model import DuckDBWarehouse
from headwater.errors import HeadwaterError, ProjectBusy
from headwater.private import FILE_MODE, make_folder, private_files
from headwater.sqltext import ident, literal
from headwater.warehouse.base import Capabilities

if TYPE_CHECKING:
    from headwater.sync.context import Progress
    from headwater.sync.stats import TableStats

logger = logging.getLogger("headwater.warehouse")


def extension_directory() -> str | None:
    """Where the ``duckdb-ext-*`` packages put DuckDB's extensions, so LOAD works offline."""
    try:
        import duckdb_ext
    except ImportError:
        return None
    return os.path.join(next(iter(duckdb_ext.__path__)), "extensions")


def connect(
    path: Path | str, *, read_only: bool = False, threads: int | None = None, memory_limit: str | None = None, trusted: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that loads extensions only from the installed ``duckdb-ext-*`` packages.

    ``trusted``: the connection runs only Headwater's and the project's own SQL (never an end user's),
    so extensions load without DuckDB re-checking their signature — which hashes the whole file, 0.09 s
    for the 49 MB postgres extension, at every process start. The check guards downloads; these files
    were installed by pip into site-packages, next to the Python code that loads them, and nothing is
    ever downloaded (autoinstall is off). See docs/architecture.md, "Extensions"."""
    config: dict[str, str | bool | int | float | list[str]] = {"autoinstall_known_extensions": False}
    if (ext := extension_directory()) is not None:
        config["extension_directory"] = ext
        if trusted:
            config["allow_unsigned_extensions"] = True
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = memory_limit
    try:
        con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ProjectBusy(
                f"The warehouse {path} is in use by another process",
                why=str(exc).splitlines()[0],
                fix="Wait for the running pipeline to finish (see `headwater runs`), then try again.",
            ) from None
        raise
    # DuckDB's Python client prints a progress bar on stdout for any query past two seconds: into
    # `--json` output, logs and pipes. Its progress is read through `query_progress` where wanted.
    # (A per-connection setting: a cursor of this connection needs it again.)
    con.execute("SET enable_progress_bar_print = false")
    return con


# Scanners that attach a server: DuckDB refuses them once external access is off.
NETWORK_SCANNERS = {"postgres", "mysql"}


def lock_down(con: duckdb.DuckDBPyConnection, confinement: Confinement, extensions: tuple[str, ...] = (), *, lock: bool = True) -> None:
    """Hold the connection to the organisation's folder, for good.

    ``extensions`` are loaded first: once external access is off, nothing can be loaded. Then
    DuckDB's file access is limited to the folder (``allowed_directories``: read_text, read_csv,
    COPY, ATTACH, glob...; URLs and extension loading are refused too). DuckDB requires this order:
    ``allowed_directories`` can neither be given when the database opens nor changed once external
    access is off, and external access cannot be switched back on. ``lock`` then locks every other
    setting (``temp_directory``, ``python_enable_replacements``...), so SQL that runs later cannot
    ``SET`` them: for the connections that run the organisation's SQL. The sync's connection runs
    only Headwater's SQL, which tunes settings per table, and is left unlocked.

    The sqlite, postgres and mysql scanners open what they are given themselves, past DuckDB's
    file system and these settings (checked with DuckDB 1.4.4: ``sqlite_scan`` of a file outside
    the allowed directories still reads it). So a connection that runs an organisation's SQL must
    load none of them: only the sync's own connection does."""
    for name in extensions:
        require_extension(con, name)
    folders = ", ".join(literal(folder) for folder in confinement.allowed_directories())
    con.execute(f"SET allowed_directories = [{folders}]")
    con.execute("SET enable_external_access = false")
    if lock:
        con.execute("SET lock_configuration = true")


class Warehouse:
    """File layout and connections of one project's DuckDB warehouse (`base.WarehouseEngine`).

    ``confinement``: the project is an organisation's on an install with many; every connection
    this opens is held to the organisation's folder (`lock_down`)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=True,
        atomic_swap=True,  # the CURRENT pointer's rename
        merge=True,  # MERGE INTO since DuckDB 1.4; the sync merges by DELETE + INSERT in one transaction
        bulk_format="arrow",
        max_identifier_length=None,
        reader_roles=False,  # an embedded file: whoever may read the snapshot files reads the data
        concurrent_writers=False,  # one process may open a database file for writing
    )
    dbt_adapter: ClassVar[str] = "dbt.adapters.duckdb"

    def __init__(self, root: Path, settings: DuckDBWarehouse, confinement: Confinement | None = None) -> None:
        self.settings = settings
        self.confinement = confinement
        self.folder = (root / settings.path).resolve()
        self.build_path = self.folder / "build.duckdb"
        self.published_dir = self.folder / "published"
        self.pointer = self.published_dir / "CURRENT"
        self.fallback: str | None = None  # what readers are told when CURRENT is damaged (see current_snapshot)
        self._fallback_lock = threading.Lock()
        self._fallback_state: object = None
        self._fallback_choice: Path | None = None
        self._fallback_note: str | None = None

    # -- the writer's side ------------------------------------------------------------------------

    @contextmanager
    def writer_lock(self, wait: float = 0, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Only one run per warehouse at a time; the OS frees the lock if the process dies.

        With ``wait`` a second run queues behind the first for up to that many seconds."""
        with self._open_lock() as handle:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ProjectBusy(
                            "Another run is already writing to this project's warehouse",
                            why=f"waited {wait:.0f}s for it to finish" if wait else None,
                            fix="Wait for it to finish (`headwater runs` shows it), then run again.",
                        ) from None
                    if on_wait is not None:
                        on_wait()
                        on_wait = None  # say it once
                    time.sleep(0.2)
            try:
                with private_files():  # the build database, snapshots, dbt's files: the organisation's data
                    yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open_lock(self) -> IO[str]:
        """The lock file, in the warehouse's folder (made if missing); a folder this process cannot write
        is said as such — every run and sync writes there — while published data stays readable."""
        try:
            make_folder(self.folder)
            return open(os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, FILE_MODE))
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            if exc.errno == errno.EROFS:
                why, fix = f"the file system under {self.folder} is mounted read-only", "Remount it read-write"
            else:
                why, fix = f"this process (uid {os.getuid()}) may not write there: {exc.strerror}", f"Make the folder writable by the user Headwater runs as (e.g. `chmod u+w {self.folder}`)"
            raise HeadwaterError(
                f"The warehouse folder {self.folder} cannot be written",
                why=why,
                fix=f"{fix}, or point warehouse.path in headwater.yml at a writable folder. Published data can still be read and exported.",
            ) from None

    def connect_build(self, sync_extensions: tuple[str, ...] | None = None) -> duckdb.DuckDBPyConnection:
        """The build database. Confined, a connection that may run the project's SQL (checks,
        publishing) is locked with no extension loaded; see `lock_down`.

        ``sync_extensions``: the connection is a sync's, which runs only Headwater's SQL; these
        extensions are loaded now, as a confined connection cannot load them later. DuckDB's
        postgres and mysql scanners refuse to attach once external access is off, so a sync of such
        sources keeps it on: what it reaches is then bounded by the checked settings alone."""
        make_folder(self.folder)
        con = connect(self.build_path, threads=self.settings.threads, memory_limit=self.settings.memory_limit, trusted=True)
        if self.confinement is not None and not set(sync_extensions or ()) & NETWORK_SCANNERS:
            try:
                lock_down(con, self.confinement, sync_extensions or (), lock=sync_extensions is None)
            except BaseException:
                con.close()
                raise
        return con

    def session(self, build: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        return build.cursor()

    def project_query(self, sql: str) -> str:
        return sql  # DuckDB's own dialect, on the build database (confined: locked down)

    def project_rows(self, build: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return rows_rolled_back(self.session(build), self.project_query(sql))

    def relation_rows(self, build: duckdb.DuckDBPyConnection, relation: str) -> int:
        row = build.execute(f"SELECT count(*) FROM {relation}").fetchone()  # the relation name comes from dbt, quoted
        return int(row[0]) if row else 0

    def sample_rows(self, build: duckdb.DuckDBPyConnection, relation: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        return sample(build, relation, limit)

    def relation_columns(self, build: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
        return describe(build, relation)

    def dbt_vars(self) -> dict[str, Any]:
        return {}

    def raw_schema(self, source: str) -> str:
        from headwater.sync.engine import raw_schema  # the sync's own naming, which the checks read too

        return raw_schema(source)

    def load_raw(
        self,
        con: duckdb.DuckDBPyConnection,
        source: Any,
        log: Callable[[str], None],
        *,
        tables: list[str] | None = None,
        full_refresh: bool = False,
        progress: Progress | None = None,
        prune: bool = False,
    ) -> list[TableStats]:
        """DuckDB is its own loader: the sync engine writes each table and its state in one
        transaction on ``con`` (a `connect_build` connection with the sources' extensions)."""
        from headwater.sync.engine import sync_source  # imported late: sync's sources import this package

        return sync_source(con, source, log, tables=tables, full_refresh=full_refresh, progress=progress, prune=prune, memory_limit=self.settings.memory_limit)

    # -- dbt --------------------------------------------------------------------------------------

    def dbt_profile(self, threads: int) -> dict[str, Any]:
        from headwater.warehouse.duckdb.dbt import profile

        return profile(self.settings, self.build_path, threads, self.confinement)

    def dbt_session(self) -> AbstractContextManager[None]:
        from headwater.warehouse.duckdb.dbt import session

        return session(self.confinement)

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, build: duckdb.DuckDBPyConnection, name: str, tables: dict[str, str], carry_over: list[str]) -> dict[str, int]:
        """A new snapshot file with the tables, then the pointer's switch; a snapshot never switched
        to is removed, so a reader falling back can never find it."""
        snapshot = self.write_snapshot(build, name, tables, carry_over)
        try:
            with self.open_snapshot(snapshot) as con:
                rows = {t: _count(con, t) for t in sorted([*tables, *carry_over])}
            self.switch(snapshot)
        except BaseException:
            if self.pointer_name() != snapshot.name:
                snapshot.unlink(missing_ok=True)
            raise
        return rows

    def published_tables(self) -> set[str]:
        snapshot = self.current_snapshot()
        if snapshot is None:
            return set()
        with self.open_snapshot(snapshot) as con:
            return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}

    def grant_reader(self, role: str) -> None:
        raise HeadwaterError(
            f"Cannot grant {role!r} read access: a DuckDB warehouse has no database roles",
            why="the published data is a file (published/CURRENT names it); whoever can read that folder reads the data",
            fix="Serve it with `headwater serve` (logins, roles, row-level rules) or export it with `headwater export`; "
            "for a BI tool that connects with a role, use a PostgreSQL warehouse.",
        )

    def write_snapshot(self, build: duckdb.DuckDBPyConnection, name: str, tables: dict[str, str], carry_over: list[str]) -> Path:
        """Copy ``tables`` (published name -> qualified build relation) and ``carry_over`` tables
        from the current snapshot into a new snapshot file. Nothing is visible until `switch`."""
        make_folder(self.published_dir)
        final = self.published_dir / f"{name}.duckdb"
        partial = final.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        previous = self.current_snapshot() if carry_over else None
        try:
            build.execute(f"ATTACH {literal(str(partial))} AS hw_snapshot")
            try:
                if previous:
                    build.execute(f"ATTACH {literal(str(previous))} AS hw_previous (READ_ONLY)")
                for table, relation in tables.items():
                    build.execute(f"CREATE TABLE hw_snapshot.main.{ident(table)} AS SELECT * FROM {relation}")
                for table in carry_over if previous else []:
                    build.execute(f"CREATE TABLE hw_snapshot.main.{ident(table)} AS SELECT * FROM hw_previous.main.{ident(table)}")
                # Into the file itself, or an error: DETACH's own checkpoint fails silently (a full
                # disk), leaving the tables in a .wal file beside it that the rename below leaves behind.
                build.execute("CHECKPOINT hw_snapshot")
            finally:
                if previous:
                    build.execute("DETACH hw_previous")
                build.execute("DETACH hw_snapshot")
            _fsync(partial)
            os.replace(partial, final)
        except BaseException:
            for leftover in (partial, partial.with_name(partial.name + ".wal")):
                leftover.unlink(missing_ok=True)  # on a full disk, the space they took is what recording the failure needs
            raise
        return final

    def switch(self, snapshot: Path) -> None:
        """Make ``snapshot`` what readers see, in one atomic rename."""
        staged = self.pointer.with_suffix(".next")
        staged.write_text(snapshot.name + "\n")
        _fsync(staged)
        os.replace(staged, self.pointer)
        _fsync(self.published_dir)
        self._collect_garbage(keep=snapshot)

    def _collect_garbage(self, keep: Path) -> None:
        # Readers holding an old file open keep reading it: unlinking does not disturb open files.
        snapshots = sorted(self.published_dir.glob("*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in [s for s in snapshots if s != keep][self.settings.keep_snapshots - 1 :]:
            old.unlink(missing_ok=True)
        for stale in [*self.published_dir.glob("*.partial"), *self.published_dir.glob("*.partial.wal")]:
            stale.unlink(missing_ok=True)

    # -- the readers' side ------------------------------------------------------------------------

    def current_snapshot(self) -> Path | None:
        """The snapshot readers see: the one ``CURRENT`` names. When the pointer is damaged (empty,
        cut short, deleted) or names a snapshot that is gone, the newest older snapshot that still
        opens, and `fallback` says so: readers keep the last good data rather than "nothing has been
        published", and whoever reads it is told (the web pages, `headwater export`, the log)."""
        name = self.pointer_name()
        if name and name.endswith(".duckdb") and (self.published_dir / name).is_file():
            self.fallback = None
            return self.published_dir / name
        return self._fall_back(name)

    def pointer_name(self) -> str | None:
        """What ``CURRENT`` says, as it is (None: there is no pointer)."""
        try:
            return self.pointer.read_text(errors="replace").strip()
        except FileNotFoundError:
            return None

    def _fall_back(self, name: str | None) -> Path | None:
        """Checked once per state of the folder (the pointer's text and the snapshots' names, times and
        sizes), not per request: opening snapshots to find an intact one costs milliseconds each."""
        candidates = self._snapshots()
        state = (name, tuple((p.name, st.st_mtime_ns, st.st_size) for p, st in candidates))
        with self._fallback_lock:
            if state != self._fallback_state:
                chosen = next((p for p, _ in candidates if self._opens(p)), None)
                self._fallback_state, self._fallback_choice = state, chosen
                self._fallback_note = _fallback_note(self.pointer, name, chosen) if chosen else None
                if self._fallback_note:
                    logger.warning("%s", self._fallback_note)
            self.fallback = self._fallback_note
            return self._fallback_choice

    def _snapshots(self) -> list[tuple[Path, os.stat_result]]:
        """Finished snapshots, newest first (by time written; by name, run number, at equal times)."""
        found = []
        for path in self.published_dir.glob("*.duckdb"):
            try:
                found.append((path, path.stat()))
            except FileNotFoundError:  # collected by a run meanwhile
                continue
        return sorted(found, key=lambda item: (item[1].st_mtime_ns, item[0].name), reverse=True)

    def _opens(self, snapshot: Path) -> bool:
        try:
            with self.open_snapshot(snapshot) as con:
                con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
            return True
        except (duckdb.Error, OSError):
            return False

    def open_snapshot(self, snapshot: Path) -> duckdb.DuckDBPyConnection:
        """Every reader in a process must open a snapshot with the same settings: DuckDB shares one
        instance per file and process, and refuses a second connection configured differently."""
        return connect(snapshot, read_only=True, threads=self.settings.threads)


def _fallback_note(pointer: Path, name: str | None, chosen: Path) -> str:
    if name is None:
        damage = f"{pointer} is missing"
    elif not name:
        damage = f"{pointer} is empty"
    else:
        damage = f"{pointer} names {name!r}, which is not there"
    return (
        f"Showing {chosen.name}, the newest intact published snapshot: {damage}. "
        "The next successful run publishes afresh; to end this now, write the snapshot's name into the pointer file or run the pipeline."
    )


class ServedFromLocalCopy:
    """For a server warehouse whose readers read a local DuckDB copy made at publish time (``self.local``,
    a DuckDB `Warehouse` for its folder): the readers' side of `base.WarehouseEngine`, delegated."""

    local: Warehouse

    @property
    def fallback(self) -> str | None:
        return self.local.fallback

    @fallback.setter
    def fallback(self, value: str | None) -> None:
        self.local.fallback = value

    def current_snapshot(self) -> Path | None:
        return self.local.current_snapshot()

    def open_snapshot(self, snapshot: Path) -> duckdb.DuckDBPyConnection:
        return self.local.open_snapshot(snapshot)


def rows_rolled_back(cursor: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` on ``cursor`` (a session of its own) in a transaction that is always rolled back,
    and close the cursor: the caller's settings and transaction are untouched, nothing is changed."""
    try:
        cursor.begin()
        try:
            cursor.execute(sql)
            if cursor.description is None:
                raise duckdb.InvalidInputException("the query returned no rows and no columns (is it a SELECT?)")
            return [d[0] for d in cursor.description], cursor.fetchall()
        finally:
            try:
                cursor.rollback()
            except duckdb.Error:
                pass  # the SQL ended the transaction itself
    finally:
        cursor.close()


def sample(build: duckdb.DuckDBPyConnection, relation: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Up to ``limit`` rows of ``relation`` (its name as dbt quotes it) on a cursor of its own."""
    cursor = build.cursor()
    try:
        cursor.execute(f"SELECT * FROM {relation} LIMIT {int(limit)}")
        return [d[0] for d in cursor.description or []], cursor.fetchall()
    finally:
        cursor.close()


def describe(build: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    """The columns of ``relation`` (its name as dbt quotes it) and their DuckDB types, from the
    query's description: no row is read."""
    cursor = build.cursor()
    try:
        return [(str(r[0]), str(r[1])) for r in cursor.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    finally:
        cursor.close()


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {ident(table)}").fetchone()
    return int(row[0]) if row else 0


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def require_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    try:
        con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        raise HeadwaterError(
            f"DuckDB's {name} extension is not available",
            why=str(exc).splitlines()[0],
            fix=f"pip install 'duckdb-ext-{name}==' matching your DuckDB version (see pyproject.toml).",
        ) from None
