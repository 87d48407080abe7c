"""What a warehouse engine provides: the seam between Headwater's run and the engine it builds in.

A run holds the writer lock, loads raw tables, has dbt build and test in a private build area, runs
the checks there and then publishes: switches, in one step, what readers see. Readers (dashboards,
exports) read only what was published. Each engine lives in a folder of its own under
``warehouse/`` (``warehouse/duckdb/``; dlt's ``destinations/impl/<engine>/`` is the model), is
registered by its ``warehouse.type`` in `headwater.warehouse.registry.ENGINES`, and says what it
can do as data (`Capabilities`) rather than through ``if engine == ...`` in the code that uses it.

What still assumes DuckDB outside ``warehouse/`` is listed in docs/architecture.md, "What the next
engine needs".
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from headwater.config.confine import Confinement
    from headwater.sync.context import Progress
    from headwater.sync.stats import TableStats


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, read by the code that must choose (and by tests), never guessed from its name."""

    transactional_ddl: bool  # CREATE/DROP/ALTER commit or roll back with the rows (raw and its state in one transaction)
    atomic_swap: bool  # publishing switches every published table at once: readers see the old set or the new one
    merge: bool  # the engine has MERGE (or an equivalent upsert) for incremental loads
    bulk_format: str  # how rows reach raw in bulk: "arrow" (DuckDB's scanners and Arrow), "copy-binary" (PostgreSQL COPY)...
    max_identifier_length: int | None  # longest table/column/schema name; None: no limit that matters
    reader_roles: bool  # the engine has database roles `grant_reader` can give read access to the published data
    concurrent_writers: bool  # processes other than the run may write while it builds (DuckDB: one process per file)


class WarehouseEngine(Protocol):
    """One project's warehouse: its build area, its raw load, its dbt profile, its publish and read sides.

    Connections are the engine's own (for DuckDB a ``duckdb.DuckDBPyConnection``); the stages that
    run SQL on them today speak DuckDB's dialect (see docs/architecture.md, "What the next engine needs")."""

    capabilities: ClassVar[Capabilities]
    dbt_adapter: ClassVar[str]  # the dbt adapter's package (its ``Plugin``), which the warm server preloads (orchestrate/warm.py)
    confinement: Confinement | None  # an organisation's project on an install with many: held to its folder
    folder: Path  # the local folder of the warehouse: the writer lock, work files, and where a full disk is looked for
    fallback: str | None  # set by `current_snapshot` when readers are shown an older snapshot than the pointer names

    # -- writing: one run at a time ---------------------------------------------------------------

    def writer_lock(self, wait: float = 0, on_wait: Callable[[], None] | None = None) -> AbstractContextManager[None]:
        """Held by the one run allowed to write; released by the OS (or the server) when the process dies."""
        ...

    def connect_build(self, sync_extensions: tuple[str, ...] | None = None) -> Any:
        """A connection to the build area: the raw tables, the models dbt builds, the checks' queries."""
        ...

    def session(self, build: Any) -> Any:
        """A session of its own on a `connect_build` connection (a cursor), reading the build area as it does."""
        ...

    def project_rows(self, build: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The project's own SQL against the warehouse (a reconcile check's query), in the warehouse's
        dialect, with the warehouse's own rights, changing nothing: its column names and rows."""
        ...

    def relation_rows(self, build: Any, relation: str) -> int:
        """The rows of a relation dbt built (its name as dbt's adapter quotes it)."""
        ...

    def sample_rows(self, build: Any, relation: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Up to ``limit`` rows of a relation dbt built (a test's stored failures): column names, rows."""
        ...

    def relation_columns(self, build: Any, relation: str) -> list[tuple[str, str]]:
        """A relation dbt built: its columns' names and the DuckDB types they have once published
        (what dashboards are checked against before a publish), read without reading its rows."""
        ...

    def raw_schema(self, source: str) -> str:
        """Where a source's raw tables live in the build area."""
        ...

    def load_raw(
        self,
        con: Any,
        source: Any,
        log: Callable[[str], None],
        *,
        tables: list[str] | None = None,
        full_refresh: bool = False,
        progress: Progress | None = None,
        prune: bool = False,
    ) -> list[TableStats]:
        """Load one source's tables into raw, each table with its sync state in one transaction, the
        engine's own way; returns per-table stats (`sync.engine.Syncable` is what ``source`` must be)."""
        ...

    # -- dbt ----------------------------------------------------------------------------------------

    def dbt_profile(self, threads: int) -> dict[str, Any]:
        """The ``outputs`` entry of profiles.yml that points dbt's adapter for this engine at the build area."""
        ...

    def dbt_vars(self) -> dict[str, Any]:
        """dbt vars the engine passes to every dbt command (BigQuery: the organisation's dataset prefix)."""
        ...

    def dbt_session(self) -> AbstractContextManager[None]:
        """Around each dbt command: what the engine's adapter needs held (a confined organisation's
        limits) and let go of afterwards (an adapter's cached connection, so the run can connect again)."""
        ...

    # -- publishing and reading --------------------------------------------------------------------

    def publish(self, build: Any, name: str, tables: dict[str, str], carry_over: list[str]) -> dict[str, int]:
        """Make ``tables`` (published name -> build relation) and ``carry_over`` (kept from what is
        published now) what readers see, all at once; returns the rows of each. Until it returns,
        readers see what they saw before; if it fails, they go on seeing that."""
        ...

    def published_tables(self) -> set[str]:
        """The tables readers see now."""
        ...

    def current_snapshot(self) -> Path | None:
        """The published version readers see now (None: nothing published). Readers compare it to
        notice a switch; `open_snapshot` opens it read-only for `publish.PublishedData`."""
        ...

    def open_snapshot(self, snapshot: Path) -> Any:
        """A read-only DuckDB connection to one published version (dashboards and exports read DuckDB
        whatever the engine: a local copy made at publish time keeps viewers off the warehouse)."""
        ...

    def grant_reader(self, role: str) -> None:
        """Let a database role (a BI tool's) read the published data and nothing else; engines
        without roles (``capabilities.reader_roles`` false) raise an error saying what to do instead."""
        ...

