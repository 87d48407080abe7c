"""The BigQuery warehouse: raw, dbt's models and the published tables in BigQuery datasets.

DuckDB stays the local engine, and keeps the sync's mirror of raw. A run's build connection is the
local DuckDB file of the DuckDB warehouse (``<path>/build.duckdb``), holding raw and its sync state:
the sync engine finds every change there, without BigQuery queries, and sends each table's change to
BigQuery before the local transaction commits (ship.py). dbt-bigquery builds the models in BigQuery;
checks read raw locally (the same rows) and dbt's results in BigQuery.

    BigQuery  <prefix>raw_<source>.<table>              raw, as the local mirror holds it
              <prefix>_headwater.sync_state             each table's state and token (ship.py)
              <prefix>staging, intermediate, marts ...  dbt's datasets (the var headwater_dataset_prefix)
              <prefix>published__run_000042             one published version: table copies
              <prefix>published                         views onto the current version: what BI tools read
              <prefix>_headwater.publications           the versions, the newest being current
    local     <path>/build.duckdb                       the sync's mirror of raw and its state
              <path>/published/CURRENT, <run>.duckdb    the dashboards' read-only copy of the current version

Publishing copies the publishable models into a new version dataset (copy jobs: no bytes billed),
writes the dashboards' local copy from it, records it as current, repoints the views of the
published dataset at it, and switches the local pointer. Headwater's readers switch in one rename.
BI tools reading the views see each view switch on its own: during the few seconds the views are
repointed, a query joining two published tables may read one from each version (BigQuery has no
transactional DDL). A kill in that window leaves the record saying which version is current, and the
next publish first finishes repointing the views at it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb

from headwater.config.confine import Confinement
from headwater.config.model import BigQueryWarehouse, DuckDBWarehouse
from headwater.errors import HeadwaterError, RunFailed
from headwater.sqltext import ident
from headwater.sync.state import STATE_SCHEMA
from headwater.warehouse.base import Capabilities
from headwater.warehouse.bigquery.client import BigQuery
from headwater.warehouse.duckdb.warehouse import ServedFromLocalCopy
from headwater.warehouse.duckdb.warehouse import Warehouse as LocalCopy

if TYPE_CHECKING:
    from headwater.sync.context import Progress
    from headwater.sync.stats import TableStats

logger = logging.getLogger("headwater.warehouse")

STATE_DATASET = STATE_SCHEMA  # Headwater's own tables: the sync state (ship.py) and the publications
PUBLICATIONS = "publications"
VERSION_PREFIX = "published__"


class Warehouse(ServedFromLocalCopy):
    """One project's BigQuery warehouse (`base.WarehouseEngine`)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        transactional_ddl=False,  # multi-statement transactions hold DML only: https://cloud.google.com/bigquery/docs/transactions
        atomic_swap=False,  # the published views are repointed one by one (Headwater's own readers switch at once)
        merge=True,
        bulk_format="parquet-load-job",
        max_identifier_length=300,  # column names; tables take 1024
        reader_roles=False,  # readers are given IAM roles on the published dataset, not database roles
        concurrent_writers=True,
    )
    dbt_adapter: ClassVar[str] = "dbt.adapters.bigquery"

    def __init__(self, root: Path, settings: BigQueryWarehouse, confinement: Confinement | None = None) -> None:
        self.settings = settings
        self.confinement = confinement
        local = DuckDBWarehouse(path=settings.path, threads=settings.threads, memory_limit=settings.memory_limit, keep_snapshots=settings.keep_snapshots)
        self.local = LocalCopy(root, local, confinement)  # the lock, the sync's mirror of raw, the dashboards' copy
        self.folder = self.local.folder
        self.bq = BigQuery(settings)

    # -- writing: one run at a time -----------------------------------------------------------------

    def writer_lock(self, wait: float = 0, on_wait: Callable[[], None] | None = None) -> AbstractContextManager[None]:
        """This host's file lock. BigQuery has no lock to take: one project folder writes a set of datasets."""
        return self.local.writer_lock(wait, on_wait)

    def connect_build(self, sync_extensions: tuple[str, ...] | None = None) -> duckdb.DuckDBPyConnection:
        """The local mirror of raw (DuckDB), where the sync finds changes and checks read raw."""
        return self.local.connect_build(sync_extensions)

    def session(self, build: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        return build.cursor()

    def project_rows(self, build: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """The project's own SQL (a reconcile check's warehouse query) runs in BigQuery, in GoogleSQL,
        with the warehouse's credentials and byte limit. A check never changes the warehouse it
        gates: a dry run (which runs nothing, and bills nothing) first says what the statement is,
        and anything but one SELECT is refused before it runs.
        https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobStatistics2 (statementType)"""
        from google.cloud import bigquery

        with self.bq.errors("A BigQuery query (check) failed"):
            dry = self.bq.client.query(sql, job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False), retry=self.bq.retry, job_retry=self.bq.job_retry)
        kind = str(dry.statement_type or "SELECT").upper()
        if kind != "SELECT":
            raise RunFailed(
                f"A check's warehouse query must be one SELECT; BigQuery reads this one as {kind}",
                why="a check reads the warehouse it gates and never changes it, so it was not run",
                fix="Write the check's SQL as a single SELECT (WITH ... SELECT is fine).",
            )
        rows = self.bq.query(sql, purpose="check")
        columns = list(rows[0]) if rows else [f.name for f in (dry.schema or [])]
        return columns, [tuple(r.values()) for r in rows]

    def relation_rows(self, build: duckdb.DuckDBPyConnection, relation: str) -> int:
        """Rows of a table dbt built, from its metadata (no query, nothing billed)."""
        table = self.bq.table(_table_id(relation))
        if table is None:
            return 0
        if table.table_type == "VIEW":
            rows = self.bq.query(f"SELECT count(*) AS n FROM {relation}", purpose="count")
            return int(rows[0]["n"])
        return int(table.num_rows or 0)

    def sample_rows(self, build: duckdb.DuckDBPyConnection, relation: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Up to ``limit`` rows of a table (a dbt test's stored failures): tabledata.list, nothing billed."""
        table = self.bq.table(_table_id(relation))
        if table is None:
            raise RunFailed(f"No table {relation} in BigQuery")
        with self.bq.errors(f"Cannot read {relation}"):
            rows = list(self.bq.client.list_rows(table, max_results=limit, retry=self.bq.retry))
        return [f.name for f in table.schema], [tuple(r.values()) for r in rows]

    def relation_columns(self, build: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
        """The table's schema (tables.get: no query, nothing billed), as the dashboards' copy types it."""
        from headwater.warehouse.bigquery.types import duck_type

        table = self.bq.table(_table_id(relation))
        if table is None:
            raise RunFailed(f"No table {relation} in BigQuery")
        return [(f.name, duck_type(f)) for f in table.schema]

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
        """The sync engine on the local mirror, each table's change sent to BigQuery before its local commit (ship.py)."""
        from headwater.sync.engine import sync_source
        from headwater.warehouse.bigquery.ship import BigQueryRaw

        target = BigQueryRaw(self.bq, self.folder / "work")
        return sync_source(con, source, log, tables=tables, full_refresh=full_refresh, progress=progress, prune=prune, memory_limit=self.settings.memory_limit, target=target)

    # -- dbt ------------------------------------------------------------------------------------------

    def dbt_profile(self, threads: int) -> dict[str, Any]:
        from headwater.warehouse.bigquery.dbt import profile

        return profile(self.settings, threads)

    def dbt_session(self) -> AbstractContextManager[None]:
        from headwater.warehouse.bigquery.dbt import session

        return session(self.settings, confined=self.confinement is not None)

    def dbt_vars(self) -> dict[str, Any]:
        from headwater.warehouse.bigquery.dbt import dbt_vars

        return dbt_vars(self.settings)

    # -- publishing -----------------------------------------------------------------------------------

    def publish(self, build: duckdb.DuckDBPyConnection, name: str, tables: dict[str, str], carry_over: list[str]) -> dict[str, int]:
        """A new version dataset (copies), the dashboards' copy written from it, the version recorded
        as current, the views repointed, the local pointer switched. Until the record, nothing readers
        see has changed; a failure before it leaves the version dataset to be dropped later."""
        version = VERSION_PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", name)
        recorded = self._current()
        current = None if recorded is None else str(recorded["version"])
        if recorded is not None:
            self._repoint(str(recorded["version"]), list(recorded["tables"]))  # a kill while repointing last time: finish it first
        self.bq.ensure_dataset(version)
        rows: dict[str, int] = {}
        try:
            for table, relation in tables.items():
                self._copy_in(_table_id(relation), self.bq.table_id(version, table))
            for table in carry_over:
                if current is None:
                    raise RunFailed(f"Cannot carry {table} over: nothing is published yet", fix="Run the pipeline with every publishable model selected once.")
                self._copy_in(self.bq.table_id(current, table), self.bq.table_id(version, table))
            published = sorted([*tables, *carry_over])
            snapshot = self._local_copy(build, name, version, published, rows)
        except BaseException:
            try:
                self.bq.drop_dataset(version)
            except HeadwaterError:
                pass
            raise
        try:
            self._record(version, published)
            self._repoint(version, published)
            self.local.switch(snapshot)
        except BaseException:
            if self.local.pointer_name() != snapshot.name:
                snapshot.unlink(missing_ok=True)
            raise
        self._drop_old_versions(keep=version)
        return rows

    def _copy_in(self, source: str, destination: str) -> None:
        """A table by a copy job (free); a view dbt built by a query that stores its rows."""
        table = self.bq.table(source)
        if table is None:
            raise RunFailed(f"Cannot publish {source}: it is not in BigQuery", fix="Run the pipeline again: dbt builds it.")
        if table.table_type == "TABLE":
            self.bq.copy_table(source, destination)
        else:
            self.bq.query(f"CREATE TABLE {self.bq.quoted(destination)} AS SELECT * FROM {self.bq.quoted(source)}", purpose="publish")

    def _local_copy(self, build: duckdb.DuckDBPyConnection, name: str, version: str, tables: list[str], rows: dict[str, int]) -> Path:
        """The dashboards' copy of ``version``: each table read from BigQuery into an in-memory
        database attached to the build connection, then written as a snapshot file as DuckDB's are."""
        from headwater.warehouse.bigquery import types

        build.execute("ATTACH ':memory:' AS hw_download")
        try:
            relations: dict[str, str] = {}
            for table in tables:
                relation = f"hw_download.main.{ident(table)}"
                with self.bq.errors(f"Cannot read the published table {table}"):
                    rows[table] = types.read_table(self.bq.client, self.bq.table_id(version, table), build, relation)
                relations[table] = relation
            return self.local.write_snapshot(build, name, relations, [])
        finally:
            build.execute("DETACH hw_download")

    def _publications(self) -> str:
        return self.bq.quoted(self.bq.table_id(STATE_DATASET, PUBLICATIONS))

    def _record(self, version: str, tables: list[str]) -> None:
        from google.cloud.bigquery import ArrayQueryParameter, ScalarQueryParameter, SchemaField

        self.bq.ensure_dataset(STATE_DATASET)
        table_id = self.bq.table_id(STATE_DATASET, PUBLICATIONS)
        if self.bq.table(table_id) is None:
            self.bq.create_table(
                table_id,
                [SchemaField("version", "STRING", mode="REQUIRED"), SchemaField("tables", "STRING", mode="REPEATED"), SchemaField("published_at", "TIMESTAMP", mode="REQUIRED")],
            )
        self.bq.query(
            f"INSERT INTO {self._publications()} (version, tables, published_at) VALUES (@version, @tables, CURRENT_TIMESTAMP())",
            [ScalarQueryParameter("version", "STRING", version), ArrayQueryParameter("tables", "STRING", tables)],
            purpose="publish",
        )

    def _current(self) -> dict[str, Any] | None:
        if self.bq.table(self.bq.table_id(STATE_DATASET, PUBLICATIONS)) is None:
            return None
        rows = self.bq.query(f"SELECT version, tables FROM {self._publications()} ORDER BY published_at DESC, version DESC LIMIT 1", purpose="publish")
        return rows[0] if rows else None

    def current_version(self) -> str | None:
        """The version dataset readers see now (None: nothing published)."""
        current = self._current()
        return None if current is None else str(current["version"])

    def _repoint(self, version: str, tables: list[str]) -> None:
        """The published dataset's views onto ``version``'s ``tables``; views of tables no longer published dropped."""
        published = self.settings.published_dataset
        self.bq.ensure_dataset(published)
        for table in tables:
            view = self.bq.table_id(published, table)
            self.bq.query(f"CREATE OR REPLACE VIEW {self.bq.quoted(view)} AS SELECT * FROM {self.bq.quoted(self.bq.table_id(version, table))}", purpose="publish")
        for stale in sorted(set(self.bq.tables(published)) - set(tables)):
            self.bq.drop_table(self.bq.table_id(published, stale))

    def _drop_old_versions(self, keep: str) -> None:
        """Versions beyond ``keep_snapshots`` (newest kept), and versions never recorded (a failed publish's)."""
        try:
            rows = self.bq.query(f"SELECT version FROM {self._publications()} ORDER BY published_at DESC, version DESC", purpose="publish")
            recorded = [str(r["version"]) for r in rows]
            kept = set(recorded[: self.settings.keep_snapshots]) | {keep}
            for dataset in self.bq.datasets():
                if dataset.startswith(VERSION_PREFIX) and dataset not in kept:
                    self.bq.drop_dataset(dataset)
        except HeadwaterError as exc:  # tidying after the switch: never fails the publish
            logger.warning("could not drop old published versions: %s", exc.what)

    def published_tables(self) -> set[str]:
        current = self._current()
        return set() if current is None else set(current["tables"])

    def grant_reader(self, role: str) -> None:
        raise HeadwaterError(
            "BigQuery has no database roles to grant",
            why="readers of a BigQuery warehouse are Google accounts or groups given IAM roles",
            fix=f"Grant the reader roles/bigquery.dataViewer on dataset {self.settings.dataset(self.settings.published_dataset)} (and roles/bigquery.jobUser on a project to query from) "
            "in the Google Cloud console or with `bq add-iam-policy-binding`; the views there read the current version.",
        )


def _table_id(relation: str) -> str:
    """dbt-bigquery's relation name (```project`.`dataset`.`table```) as a table id (project.dataset.table)."""
    parts = re.findall(r"`((?:[^`\\]|\\.)*)`|([^`.]+)", relation)
    return ".".join((quoted or bare) for quoted, bare in parts)
