"""What every file and spreadsheet source does on sync: per table, fetch, skip if unchanged, stage, clean.

A table is skipped when its fingerprint — the content hash of its file(s) or cells, plus its rules and
reading settings — equals the one saved with the table at its last sync, so editing a rule reloads
the table even when the file did not change. A changed table replaces its rows, quarantine and
fingerprint in one transaction (`headwater.clean.load`). A table that fails (too many bad rows, an
unreadable file) keeps its previous data; the other tables of the source still sync, and the sync
then fails naming every table that did not load.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from headwater.clean.load import Staged, Target, load_table, rules_breakdown
from headwater.config.files import TableRules
from headwater.errors import HeadwaterError, NotFound
from headwater.sqltext import ident, one_value
from headwater.sync.context import SyncContext
from headwater.sync.engine import check_name_fits, quarantine_table, raw_schema
from headwater.sync.sql import tables_failed
from headwater.sync.state import load_state
from headwater.sync.stats import TableStats


@dataclass
class Opened:
    """A table's content, fetched: its hash, the files or tabs it came from, and how to stage it."""

    content_hash: str
    sources: list[str]  # file labels, URLs or tab names, for the sync state
    stage: Callable[[duckdb.DuckDBPyConnection], Staged]


class FileSource(ABC):
    """Base of the CSV, Excel and Google Sheets sources."""

    # Where a sync's work folder (downloads, converted files) is made: the system's temporary
    # folder, or one inside the organisation's folder when its runs are confined to it.
    work_parent: Path | None = None

    def __init__(self, name: str, settings: TableRules, root: Path) -> None:
        self.name = name
        self.settings = settings
        self.root = root
        self.specs: dict[str, TableRules] = {}  # this sync's tables, once listed

    @abstractmethod
    def table_specs(self, work: Path) -> dict[str, TableRules]:
        """Table name -> its place in the file and its rules."""

    @abstractmethod
    def open_table(self, table: str, spec: TableRules, work: Path) -> Opened: ...

    def where(self, table: str) -> str:
        return f"Source '{self.name}', table '{table}'"

    def sync(self, ctx: SyncContext) -> list[TableStats]:
        stats: list[TableStats] = []
        failures: list[HeadwaterError] = []
        if self.work_parent is not None:
            self.work_parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"headwater-{self.name}-", dir=self.work_parent) as folder:
            work = Path(folder)
            specs = self.specs = self.table_specs(work)
            for table in self._selected(specs, ctx.tables):
                try:
                    stats.append(self._sync_table(ctx, table, specs[table], work))
                except HeadwaterError as exc:
                    ctx.log(f"source {self.name}: table {table}: failed; it keeps its previous data (the error is reported when the sync ends)")
                    failures.append(exc)
        if failures:  # as a database source ends: exit 2 when every failure is the user's to fix (a file, a rule)
            raise tables_failed(self.name, failures, stats)
        return stats

    def _selected(self, specs: dict[str, TableRules], wanted: list[str] | None) -> list[str]:
        if wanted is None:
            return list(specs)
        unknown = [t for t in wanted if t not in specs]
        if unknown:
            raise NotFound(f"Source '{self.name}' has no table {', '.join(unknown)}", why=f"its tables: {', '.join(specs) or '(none)'}", fix="Name a table the source defines.")
        return [t for t in specs if t in wanted]

    def _sync_table(self, ctx: SyncContext, table: str, spec: TableRules, work: Path) -> TableStats:
        started = time.perf_counter()
        fix = f"Name it yourself: list it under sources.{self.name}.tables with a shorter name (and its sheet or range)."
        check_name_fits("table", table, ctx.target.max_identifier, where=f"Source '{self.name}'", fix=fix)  # a table named after its sheet or tab
        opened = self.open_table(table, spec, work)
        fingerprint = self._fingerprint(opened.content_hash, spec)
        schema = raw_schema(self.name)
        previous = load_state(ctx.con, self.name, table)
        companion = quarantine_table(table, ctx.target.max_identifier)
        if not ctx.full_refresh and previous and previous.get("fingerprint") == fingerprint and _exists(ctx.con, schema, table, companion):
            rows = one_value(ctx.con.execute(f"SELECT count(*) FROM {ident(schema)}.{ident(table)}"))
            quarantine = f"{ident(schema)}.{ident(companion)}"
            quarantined = one_value(ctx.con.execute(f"SELECT count(DISTINCT (source_file, row_number)) FROM {quarantine}"))
            ctx.log(f"source {self.name}: table {table}: unchanged since the last sync, skipped ({rows:,} rows, {quarantined:,} in quarantine)")
            stats = TableStats(table, rows, round(time.perf_counter() - started, 3), mode="skipped", quarantined=quarantined)
            stats.quarantine_by_rule = rules_breakdown(ctx.con, quarantine)  # what the quarantine still holds
            return stats
        staged = opened.stage(ctx.con)
        state: dict[str, object] = {"fingerprint": fingerprint, "content_sha256": opened.content_hash, "sources": opened.sources}
        stats = load_table(ctx.con, staged, spec, Target(self.name, schema, table, state, ctx.target), ctx.log)
        stats.seconds = round(time.perf_counter() - started, 3)
        ctx.report(table, stats.rows_read, stats.rows_read)
        return stats

    def _fingerprint(self, content_hash: str, spec: TableRules) -> str:
        source = self.settings.model_dump(mode="json", exclude={"tables", "credentials"})  # a key is no content
        settings = {"source": source, "table": spec.model_dump(mode="json", exclude={"credentials"})}
        text = json.dumps(settings, sort_keys=True, default=str) + content_hash
        return hashlib.sha256(text.encode()).hexdigest()


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str, companion: str) -> bool:
    found = one_value(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() AND table_schema = ? AND table_name IN (?, ?)",
        [schema, table, companion],
    ))
    return int(found) == 2
