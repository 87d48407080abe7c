"""The PostgreSQL warehouse: raw, dbt's models and the published schema in one PostgreSQL database.

DuckDB stays the local engine. A run's build connection is an in-memory DuckDB with the warehouse
database attached through DuckDB's postgres extension under the database's own name, and made the
default catalog: the sync engine writes raw tables and their state there in one PostgreSQL
transaction (binary COPY for the rows), dbt's relation names (``"db"."schema"."table"``) resolve
the same in DuckDB and in PostgreSQL, and Headwater's checks read the same tables.

    PostgreSQL  raw_<source>.<table>, _headwater.sync_state   the sync's tables, rows and state together
                staging, intermediate, marts, ... (dbt)       the build area: dbt-postgres builds here
                published                                     what readers and BI tools see
    local       <path>/.lock                                  this host's writer lock (and an advisory lock in PostgreSQL)
                <path>/published/CURRENT, <run>.duckdb        the dashboards' read-only copy of `published`

Publishing copies the publishable models into a fresh schema and renames it over ``published`` in
one transaction (PostgreSQL's DDL is transactional): readers and BI tools see the old tables or the
new ones, never a mix, and a failure or a kill leaves ``published`` as it was. The old schema is
only renamed aside in that transaction (``published__old_<xid>``, recorded in
``_headwater.retired_schemas``: only schemas listed there are ever dropped, never one of a user's
named alike), which takes no lock on its tables, and dropped after the commit once no reader still holds them: a reader's long query never
holds up the publish, and so never holds up, behind the publish's lock, every other reader. (A
REPEATABLE READ or SERIALIZABLE transaction begun before a publish, pg_dump's among them, finds the
new tables by name but not their rows: PostgreSQL's catalog is not versioned by snapshot. BI tools
read in READ COMMITTED, statement by statement.) The dashboards read the local copy written from
the same build relations just before that transaction, so viewers never query the warehouse.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import duckdb

from headwater.config.confine import Confinement
from headwater.config.model import DuckDBWarehouse, PostgresWarehouse
from headwater.diskfull import disk_full
from headwater.errors import DiskFull, HeadwaterError, ProjectBusy, RunFailed, TransientFailure, first_line, host_not_found, unresolved_host
from headwater.redact import redact
from headwater.sqltext import ident, libpq_dsn, literal, one_value, without_password
from headwater.sync.state import STATE_SCHEMA  # the sync's state, and here the reader roles granted
from headwater.warehouse.base import Capabilities
from headwater.warehouse.duckdb.warehouse import NETWORK_SCANNERS, ServedFromLocalCopy, connect, lock_down, require_extension, rows_rolled_back, sample
from headwater.warehouse.duckdb.warehouse import Warehouse as LocalCopy
from headwater.warehouse.duckdb.warehouse import describe as describe_relation
from headwater.warehouse.postgres.types import PostgresRaw

if TYPE_CHECKING:
    import psycopg

    from headwater.sync.context import Progress
    from headwater.sync.stats import TableStats

logger = logging.getLogger("headwater.warehouse")

READERS_TABLE = f"{STATE_SCHEMA}.reader_roles"
RETIRED_TABLE = f"{STATE_SCHEMA}.retired_schemas"  # the old published schemas the swaps renamed aside, until dropped
NEXT_SUFFIX, OLD_SUFFIX = "__next", "__old_"  # the staged schema; the old ones, by the swap's transaction id
RETIRED_LOCK_TIMEOUT = "1s"  # how long dropping an old published schema waits for its last readers


class Warehouse(ServedFromLocalCopy):
    """One project's PostgreSQL warehouse (`base.WarehouseEngine`)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=True,
        atomic_swap=True,  # the published schema is renamed into place in one transaction
        merge=True,  # the sync merges by DELETE + INSERT in the table's one transaction
        bulk_format="copy-binary",  # DuckDB's postgres extension writes rows with COPY ... (FORMAT binary; text when a column is a list)
        max_identifier_length=63,  # NAMEDATALEN - 1
        reader_roles=True,
        concurrent_writers=True,  # a server: BI tools and other services may write their own schemas
    )
    dbt_adapter: ClassVar[str] = "dbt.adapters.postgres"

    def __init__(self, root: Path, settings: PostgresWarehouse, confinement: Confinement | None = None) -> None:
        self.settings = settings
        self.confinement = confinement
        self.database = settings.database
        local = DuckDBWarehouse(path=settings.path, threads=settings.threads, memory_limit=settings.memory_limit, keep_snapshots=settings.keep_snapshots)
        self.local = LocalCopy(root, local, confinement)  # the lock file and the dashboards' copy
        self.folder = self.local.folder
        self.published = settings.published_schema

    # -- connections --------------------------------------------------------------------------------

    def dsn(self, application_name: str = "headwater") -> str:
        return libpq_dsn(self.settings.url, application_name=application_name)

    def where(self) -> str:
        parts = urlsplit(self.settings.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{self.database}"

    def connect_admin(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        """A psycopg connection to the warehouse database (publish, grants, the advisory lock)."""
        try:
            import psycopg
        except ImportError:
            raise HeadwaterError(
                "A PostgreSQL warehouse needs the psycopg driver, which is not installed",
                fix="pip install 'headwater[postgres]'",
            ) from None
        try:
            return psycopg.connect(self.dsn(), autocommit=autocommit)
        except psycopg.Error as exc:
            raise self.connection_error(exc) from None

    def connection_error(self, exc: Exception) -> HeadwaterError:
        """An error reaching the warehouse, with the password taken out and what to check."""
        text = redact(without_password(str(exc), self.settings.url))
        if 'Failed to execute query "' in text and "ERROR:" in text:  # DuckDB's wrapping quotes the whole statement first
            text = text[text.index("ERROR:") :]
        low = text.lower()
        what = f"Cannot use the warehouse database {self.where()}"
        if "password authentication failed" in low or "no password supplied" in low:
            return HeadwaterError(what, why=first_line(text), fix="Check the user and password in warehouse.url (headwater.yml, or the secret it names).")
        if "does not exist" in low and "database" in low:
            return HeadwaterError(what, why=first_line(text), fix=f"Create it (`createdb {self.database}`) or fix the database name at the end of warehouse.url.")
        if unresolved_host(text):
            return host_not_found(what, urlsplit(self.settings.url).hostname or "", "warehouse.url", first_line(text))
        if any(w in low for w in ("could not connect", "connection refused", "timeout", "timed out", "server closed", "connection reset", "no route")):
            return TransientFailure(what, why=first_line(text), fix="Check that the server is running and accepts connections from here (host, port, pg_hba.conf). The run is retried.")
        if "permission denied for table" in low or "must be owner of" in low:
            return HeadwaterError(
                what,
                why=first_line(text),
                fix="Another user owns the table: the warehouse user must own Headwater's tables (raw_<source>.*, _headwater.*). "
                "As their owner, `ALTER TABLE <table> OWNER TO <warehouse user>`, or sync as the user that created them.",
            )
        if "permission denied" in low:
            return HeadwaterError(
                what, why=first_line(text), fix=f"The warehouse user must own the database or be granted CREATE on it: `GRANT CREATE ON DATABASE {self.database} TO <user>`."
            )
        return HeadwaterError(what, why=first_line(text), fix="See PostgreSQL's message above.")

    def connect_build(self, sync_extensions: tuple[str, ...] | None = None) -> duckdb.DuckDBPyConnection:
        """A local DuckDB with the warehouse attached as its default catalog. Confined (an
        organisation on an install with many), it is held to the organisation's folder once
        attached, as the DuckDB warehouse's connections are; the project's own SQL never runs on it
        in DuckDB (`project_query` sends it to PostgreSQL, which enforces the warehouse user's rights)."""
        make = self.folder / "work"
        make.mkdir(parents=True, exist_ok=True)
        con = connect(":memory:", threads=self.settings.threads, memory_limit=self.settings.memory_limit, trusted=True)
        try:
            con.execute(f"SET temp_directory = {literal(str(make / 'duckdb-spill'))}")
            require_extension(con, "postgres")
            try:
                con.execute(f"ATTACH {literal(self.dsn())} AS {ident(self.database)} (TYPE postgres)")
                con.execute(f"SELECT * FROM postgres_query({literal(self.database)}, 'SELECT 1')").fetchall()
            except duckdb.Error as exc:
                raise self.connection_error(exc) from None
            con.execute(f"USE {ident(self.database)}")
            if self.confinement is not None and not set(sync_extensions or ()) & NETWORK_SCANNERS:
                lock_down(con, self.confinement, sync_extensions or (), lock=sync_extensions is None)
            else:
                for name in sync_extensions or ():
                    require_extension(con, name)
        except BaseException:
            con.close()
            raise
        return con

    def session(self, build: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """A cursor of its own on the build connection, reading the warehouse as the connection does."""
        cursor = build.cursor()
        cursor.execute(f"USE {ident(self.database)}")
        return cursor

    def project_query(self, sql: str) -> str:
        """The project's own SQL (a reconcile check's warehouse query) runs in PostgreSQL, in its
        dialect, with the warehouse user's rights; DuckDB only relays the rows."""
        return f"SELECT * FROM postgres_query({literal(self.database)}, {literal(sql)})"

    def project_rows(self, build: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return rows_rolled_back(self.session(build), self.project_query(sql))

    def relation_rows(self, build: duckdb.DuckDBPyConnection, relation: str) -> int:
        return int(one_value(build.execute(f"SELECT count(*) FROM {relation}")))

    def sample_rows(self, build: duckdb.DuckDBPyConnection, relation: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        return sample(build, relation, limit)

    def relation_columns(self, build: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
        """As DuckDB's scanner sees them, which is how the dashboards' local copy is written."""
        return describe_relation(build, relation)

    def dbt_vars(self) -> dict[str, Any]:
        return {}

    # -- writing: one run at a time -----------------------------------------------------------------

    @contextmanager
    def writer_lock(self, wait: float = 0, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """This host's file lock, then a session advisory lock in the warehouse database itself: two
        hosts (or two project folders) pointed at one warehouse never build and publish at once.
        PostgreSQL releases the advisory lock when the session ends, however the process ends."""
        with self.local.writer_lock(wait, on_wait):
            admin = self.connect_admin(autocommit=True)
            try:
                key = _lock_key(f"headwater writer {self.database}")
                deadline = time.monotonic() + wait
                while not one_value(admin.execute("SELECT pg_try_advisory_lock(%s)", [key])):
                    if time.monotonic() >= deadline:
                        raise ProjectBusy(
                            f"Another Headwater process is writing to the warehouse database {self.where()}",
                            why=f"waited {wait:.0f}s for it" if wait else "it holds the warehouse's writer lock (a PostgreSQL advisory lock)",
                            fix="Wait for that run to finish, then run again; a process that died releases the lock by itself.",
                        )
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    time.sleep(0.2)
                yield
            finally:
                admin.close()  # ends the session: the advisory lock goes with it

    def raw_schema(self, source: str) -> str:
        from headwater.sync.engine import raw_schema

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
        """The sync engine, writing through the attached warehouse: each table's rows (COPY: binary, text for tables with arrays)
        and its state in one PostgreSQL transaction; types cast exactly to what PostgreSQL holds."""
        from headwater.sync.engine import sync_source

        try:
            return sync_source(
                con, source, log, tables=tables, full_refresh=full_refresh, progress=progress, prune=prune, memory_limit=self.settings.memory_limit, target=PostgresRaw(self.database, self.connection_error)
            )
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:  # the source's and each table's errors are HeadwaterErrors: this is the warehouse's own
            raise self.connection_error(exc) from None

    # -- dbt ------------------------------------------------------------------------------------------

    def dbt_profile(self, threads: int) -> dict[str, Any]:
        from headwater.warehouse.postgres.dbt import profile

        return profile(self.settings.url, threads)

    def dbt_session(self) -> AbstractContextManager[None]:
        from headwater.warehouse.postgres.dbt import session

        return session(self.settings.url, confined=self.confinement is not None)

    # -- publishing -----------------------------------------------------------------------------------

    def publish(self, build: duckdb.DuckDBPyConnection, name: str, tables: dict[str, str], carry_over: list[str]) -> dict[str, int]:
        """The dashboards' local copy first (from the same build relations; invisible until its
        pointer switches), then the published schema swapped in one PostgreSQL transaction, then
        the local pointer. A failure before the commit leaves both as they were; a kill between the
        commit and the pointer's rename leaves the dashboards on the previous copy until the next
        run publishes (the copy never runs ahead of PostgreSQL). Tables carried over are copied from
        PostgreSQL's published schema in both places, not from the previous local copy, which such a
        kill (or a failed switch) leaves behind PostgreSQL: the copy would keep the older table."""
        carried = {table: f"{ident(self.database)}.{ident(self.published)}.{ident(table)}" for table in carry_over}
        snapshot = self.local.write_snapshot(build, name, self._exact_reads({**tables, **carried}), [])
        try:
            rows = self._swap(tables, carry_over)
            try:
                self.local.switch(snapshot)
            except Exception as exc:  # after the commit: say what did change, a full disk included (not "left as it was")
                raise self._behind(rows, exc) from exc
        except BaseException:
            if self.local.pointer_name() != snapshot.name:
                snapshot.unlink(missing_ok=True)
            raise
        self._drop_retired()
        return rows

    def _behind(self, rows: dict[str, int], exc: Exception) -> HeadwaterError:
        """The error for a publish committed in PostgreSQL whose local copy could not be switched to."""
        what = f"Published {', '.join(rows)} in {self.where()} (schema {self.published}), but the dashboards' copy could not be switched to it"
        behind = "BI tools and reader roles see the new tables; `headwater serve` and exports show the previous ones until the next successful run."
        full = disk_full(exc, self.local.published_dir)
        error: HeadwaterError
        if full is not None:
            error = DiskFull(what, why=full.what, fix=f"{behind} Free space on that disk (or move the folder to a larger one), then run again.")
        else:
            error = RunFailed(what, why=f"{type(exc).__name__}: {first_line(str(exc))}", fix=f"{behind} Check {self.local.published_dir} (disk space, permissions), then run again.")
        error.published = rows
        return error

    def _exact_reads(self, relations: dict[str, str]) -> dict[str, str]:
        """How the local copy reads each relation. DuckDB's scanner reads a ``numeric`` without
        precision as DOUBLE (16 digits); such a column is read instead through PostgreSQL as
        ``numeric(38, s)``, with ``s`` the largest scale of its values, whenever every value fits in
        38 digits — exactly, as DuckDB's DECIMAL(38, s). One that does not fit stays DOUBLE, and the
        log says so (docs/warehouses.md)."""
        admin = self.connect_admin(autocommit=True)
        try:
            reads: dict[str, str] = {}
            for table, relation in relations.items():
                schema_table = _schema_and_table(relation)
                columns = admin.execute(
                    "SELECT attname, atttypid = 'numeric'::regtype AND atttypmod = -1 FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    [schema_table],
                ).fetchall()
                wide = [name for name, unconstrained in columns if unconstrained]
                if not wide:
                    reads[table] = relation
                    continue
                special = "IN ('NaN', 'Infinity', '-Infinity')"  # no DECIMAL holds them: such a column stays DOUBLE
                measures = ", ".join(
                    f"max(scale({ident(c)})) FILTER (WHERE {ident(c)} NOT {special}), max(length(trunc(abs({ident(c)}))::text)) FILTER (WHERE {ident(c)} NOT {special}), "
                    f"count(*) FILTER (WHERE {ident(c)} {special})"
                    for c in wide
                )
                found = admin.execute(f"SELECT {measures} FROM {schema_table}").fetchone() or ()
                casts: dict[str, str] = {}
                for i, column in enumerate(wide):
                    scale, digits, odd = int(found[3 * i] or 0), int(found[3 * i + 1] or 1), int(found[3 * i + 2] or 0)
                    if scale + digits <= 38 and not odd:
                        casts[column] = f"CAST({ident(column)} AS numeric(38, {scale}))"
                    else:
                        logger.warning("published table %s: column %s holds numbers of more than 38 digits, or NaN or infinity; the dashboards' copy holds it as DOUBLE (about 16 digits)", table, column)
                if not casts:
                    reads[table] = relation
                    continue
                select = ", ".join(f"{casts[n]} AS {ident(n)}" if n in casts else ident(n) for n, _ in columns)
                reads[table] = f"postgres_query({literal(self.database)}, {literal(f'SELECT {select} FROM {schema_table}')})"
            return reads
        finally:
            admin.close()

    def _swap(self, tables: dict[str, str], carry_over: list[str]) -> dict[str, int]:
        published, staged = self.published, self.published + NEXT_SUFFIX
        admin = self.connect_admin()
        try:
            with admin.transaction():
                admin.execute(f"DROP SCHEMA IF EXISTS {ident(staged)} CASCADE")
                admin.execute(f"CREATE SCHEMA {ident(staged)}")
                for table, relation in tables.items():
                    admin.execute(f"CREATE TABLE {ident(staged)}.{ident(table)} AS SELECT * FROM {relation}")
                for table in carry_over:
                    admin.execute(f"CREATE TABLE {ident(staged)}.{ident(table)} AS SELECT * FROM {ident(published)}.{ident(table)}")
                rows = {t: int(one_value(admin.execute(f"SELECT count(*) FROM {ident(staged)}.{ident(t)}"))) for t in sorted([*tables, *carry_over])}
                for role in self._reader_roles(admin):
                    _grant(admin, role, staged)
                if admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [published]).fetchone() is not None:
                    # Renamed aside, not dropped: DROP would wait for every reader still holding
                    # an old table, and every new reader would queue behind it (`_drop_retired`).
                    retired = f"{published}{OLD_SUFFIX}{int(one_value(admin.execute('SELECT txid_current()'))):x}"
                    admin.execute(f"ALTER SCHEMA {ident(published)} RENAME TO {ident(retired)}")
                    admin.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
                    admin.execute(f"CREATE TABLE IF NOT EXISTS {RETIRED_TABLE} (schema_name TEXT PRIMARY KEY, retired_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                    admin.execute(f"INSERT INTO {RETIRED_TABLE} (schema_name) VALUES (%s)", [retired])
                admin.execute(f"ALTER SCHEMA {ident(staged)} RENAME TO {ident(published)}")
        except Exception as exc:
            if _is_psycopg_error(exc, "OperationalError"):  # reset, timed out, server gone: said as such, and retried
                raise self.connection_error(exc) from exc
            if _is_psycopg_error(exc):  # the server refused (out of space, a lock, a table dbt left odd): not a bug of ours
                raise RunFailed(
                    f"Publishing to the warehouse {self.where()} failed — published data was left as it was",
                    why=first_line(redact(str(exc))),
                    fix="See PostgreSQL's message; the transaction was rolled back, so readers still see the previous tables. Run again once it is fixed.",
                ) from exc
            raise
        finally:
            admin.close()
        return rows

    def _drop_retired(self) -> None:
        """Drop the published schemas earlier swaps renamed aside (those `RETIRED_TABLE` lists: a
        schema of the user's is never taken for one by its name), each as soon as no reader holds
        its tables (waiting `RETIRED_LOCK_TIMEOUT` at most); one still read is left, listed, for the
        next publish. Tidying after the commit: nothing here can fail the publish."""
        try:
            admin = self.connect_admin()
        except HeadwaterError:
            return
        try:
            if one_value(admin.execute("SELECT to_regclass(%s)", [RETIRED_TABLE])) is None:
                return
            names = [r[0] for r in admin.execute(f"SELECT schema_name FROM {RETIRED_TABLE} ORDER BY retired_at").fetchall()]
            admin.rollback()
            for retired in names:
                try:
                    with admin.transaction():
                        admin.execute(f"SET LOCAL lock_timeout = '{RETIRED_LOCK_TIMEOUT}'")
                        admin.execute(f"DROP SCHEMA IF EXISTS {ident(retired)} CASCADE")
                        admin.execute(f"DELETE FROM {RETIRED_TABLE} WHERE schema_name = %s", [retired])
                except Exception as exc:
                    if not _is_psycopg_error(exc):
                        raise
        except Exception as exc:
            if not _is_psycopg_error(exc):
                raise
        finally:
            admin.close()

    def published_tables(self) -> set[str]:
        admin = self.connect_admin(autocommit=True)
        try:
            rows = admin.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [self.published]).fetchall()
        finally:
            admin.close()
        return {r[0] for r in rows}

    def grant_reader(self, role: str) -> None:
        """Create ``role`` if it is missing (NOLOGIN: give it a password and LOGIN yourself, or grant
        it to a login role), let it read the published schema — and only that: it gets no rights on
        raw, the build schemas or Headwater's own — and remember it, so every publish grants the
        new tables again."""
        admin = self.connect_admin()
        try:
            with admin.transaction():
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone() is None:
                    admin.execute(f"CREATE ROLE {ident(role)} NOLOGIN")
                admin.execute(f"GRANT CONNECT ON DATABASE {ident(self.database)} TO {ident(role)}")
                admin.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
                admin.execute(f"CREATE TABLE IF NOT EXISTS {READERS_TABLE} (role TEXT PRIMARY KEY, granted_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                admin.execute(f"INSERT INTO {READERS_TABLE} (role) VALUES (%s) ON CONFLICT (role) DO NOTHING", [role])
                if admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.published]).fetchone() is not None:
                    _grant(admin, role, self.published)
        except Exception as exc:
            if _is_psycopg_error(exc):
                raise HeadwaterError(
                    f"Could not grant {role!r} read access to {self.where()}.{self.published}",
                    why=first_line(str(exc)),
                    fix="The warehouse user needs CREATEROLE (or create the role yourself first) and must own the published schema.",
                ) from None
            raise
        finally:
            admin.close()

    def _reader_roles(self, admin: psycopg.Connection[Any]) -> list[str]:
        if one_value(admin.execute("SELECT to_regclass(%s)", [READERS_TABLE])) is None:
            return []
        # A role dropped since it was granted is skipped: one missing reader must not stop publishing.
        return [r[0] for r in admin.execute(f"SELECT r.role FROM {READERS_TABLE} r JOIN pg_roles p ON p.rolname = r.role ORDER BY r.role").fetchall()]


def _schema_and_table(relation: str) -> str:
    """``"db"."schema"."table"`` (dbt's relation name, or ours) as ``"schema"."table"``: PostgreSQL
    takes no database name in ``::regclass``."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^".]+)', relation)
    names = [quoted.replace('""', '"') if quoted or not bare else bare for quoted, bare in parts]
    return ".".join(ident(n) for n in names[-2:])


def _grant(admin: psycopg.Connection[Any], role: str, schema: str) -> None:
    admin.execute(f"GRANT USAGE ON SCHEMA {ident(schema)} TO {ident(role)}")
    admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {ident(schema)} TO {ident(role)}")


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def _is_psycopg_error(exc: BaseException, kind: str = "Error") -> bool:
    """Whether ``exc`` is psycopg's ``kind`` (``OperationalError``: the connection failed, not the SQL).
    Only a loaded psycopg can have raised it."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, getattr(psycopg, kind))
