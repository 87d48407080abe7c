"""Clean a staged table and replace its raw table and quarantine in one transaction.

    staged cells (text) ──cleaning SELECT──▶ hw_clean (temp: typed columns, _problems, _empty)
                                               │  unique keys: every row of a repeated key
                                               ▼
    good rows ──▶ raw_<source>.<table>         hw_quarantine (temp: one row per broken rule)
    bad rows  ──▶ raw_<source>.<table>__quarantine   (source_file, row_number, column_name,
                                                     original_value, rule, message)

Nothing a rule rejects is dropped or changed silently: it lands in the quarantine with the reason.
Too many bad rows (``max_bad_rows``) fail the table before anything is written, so the previous raw
table, quarantine and sync state stay exactly as they were. Otherwise the table, its quarantine and
its sync state (the content fingerprint) commit together: a sync killed at any instant leaves either
the old data with the old fingerprint or the new with the new.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from headwater.clean.headers import check_rule_columns
from headwater.clean.parsers import format_regex
from headwater.clean.plan import Column, cleaning_select, columns_for, unique_keys
from headwater.config.files import DEFAULT_MAX_BAD_ROWS, EXCEL_SERIAL, TableRules
from headwater.errors import HeadwaterError
from headwater.sqltext import ident, literal
from headwater.sync.context import Change, RawTarget
from headwater.sync.engine import SYNCED_AT, check_name_fits, quarantine_table
from headwater.sync.sql import Column as RawColumn
from headwater.sync.sql import refused_error, stored_select
from headwater.sync.state import ensure_state_table, save_state
from headwater.sync.stats import TableStats

FILE_COLUMN = "_headwater_file"
ROW_COLUMN = "_headwater_row"
TOP_VALUES = 5


class TooManyBadRows(HeadwaterError):
    """More rows broke a table's rules than ``max_bad_rows`` allows: the file or the rules are the
    user's to fix (exit 2, not retried); the table keeps its previous data."""


@dataclass(frozen=True)
class Rejected:
    """A row the reader could not turn into the table's cells (too many fields, unreadable bytes, a
    formula that evaluated to an error). Its row is quarantined, whether or not the reader staged it."""

    file: str
    row: int
    value: str | None
    rule: str
    message: str
    column: str | None = None  # the cell at fault, when it is one cell


@dataclass
class Fixups:
    """What a reader learns only after DuckDB has scanned its file (CSV: the rows it rejected)."""

    rejected: list[Rejected] = field(default_factory=list)
    recovered: pa.Table | None = None  # rows put back after all (columns _file, _row, c0..), cleaned like the rest
    skipped: dict[str, list[int]] = field(default_factory=dict)  # file -> rows the scan did not number (renumbering)


@dataclass
class Staged:
    """A table's cells as text, ready to clean: ``relation`` yields ``_file``, ``_row``, ``c0``.. ``c{n-1}``."""

    relation: str
    names: list[str]  # the final column names, one per c_i
    where: str  # "source 'x', table 'y'" for messages
    notes: list[str] = field(default_factory=list)
    droppable: list[str] = field(default_factory=list)  # columns with no header: dropped if they hold no value
    finish: Callable[[duckdb.DuckDBPyConnection], Fixups] | None = None


@dataclass
class Target:
    source: str
    schema: str
    table: str
    state: dict[str, object]  # saved with the rows (content fingerprint and files)
    raw: RawTarget = field(default_factory=RawTarget)  # how the warehouse stores each type (`SyncContext.target`)


def load_table(con: duckdb.DuckDBPyConnection, staged: Staged, rules: TableRules, target: Target, log: Callable[[str], None]) -> TableStats:
    started = time.perf_counter()
    check_rule_columns(staged.names, rules, staged.where)
    columns = columns_for(staged.names, rules)
    ordered = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]  # type: ignore[index]
    try:
        # Rows carry their file and row number, so DuckDB need not keep them in order: it then writes
        # in parallel with less memory. The caller's setting is restored afterwards.
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"CREATE OR REPLACE TEMP TABLE hw_clean AS {cleaning_select(staged.relation, columns, rules)}")
        fixups = staged.finish(con) if staged.finish else Fixups()
        _apply_fixups(con, fixups, columns, rules)
        good = _quarantine(con, rules, fixups.rejected)
        report = _report(con, good, fixups.rejected)
        warnings = ambiguous_dates(con, columns)
        _enforce_threshold(report, rules, staged.where, warnings)
        names = _kept(con, staged, rules)
        _check_names(names, target, staged.where)
        changes = _write(con, names, target, good, log)
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if ordered else 'false'}")
        temps = ["hw_clean", "hw_quarantine", "hw_recovered", "hw_skips", "hw_rejected"] + [f"hw_dup{i}" for i in range(len(unique_keys(rules)))]
        for temp in temps:
            con.execute(f"DROP TABLE IF EXISTS temp.{temp}")
    notes = [*staged.notes, *report.notes()]
    stats = TableStats(
        target.table,
        report.loaded,
        round(time.perf_counter() - started, 3),
        rows_read=report.rows_read,
        upserted=report.loaded,
        quarantined=report.bad_rows,
        quarantine_by_rule=report.by_rule,
        schema_changes=changes,
        notes=notes,
        warnings=warnings,
    )
    log(f"source {target.source}: table {target.table}: {report.summary()} -> {target.schema}.{target.table}")
    return stats


def _kept(con: duckdb.DuckDBPyConnection, staged: Staged, rules: TableRules) -> list[str]:
    """The columns to write: a column with neither a header nor a value is an artefact of the file
    (a trailing delimiter, formatting on empty cells), not data."""
    candidates = [n for n in staged.droppable if n not in rules.columns]
    if not candidates:
        return staged.names
    counts = con.execute("SELECT " + ", ".join(f"count({ident(n)})" for n in candidates) + " FROM hw_clean").fetchone()
    empty = {n for n, count in zip(candidates, counts, strict=True) if count == 0}  # type: ignore[arg-type]
    return [n for n in staged.names if n not in empty]


def _check_names(names: list[str], target: Target, where: str) -> None:
    """A column name longer than the warehouse keeps (PostgreSQL: 63 bytes) would land cut short:
    under another name than the models select, or on another long column alike in its first bytes."""
    for name in names:
        fix = f"Give it a shorter name with the source's rename: setting, e.g. rename: {{{name}: <shorter name>}}."
        check_name_fits("column", name, target.raw.max_identifier, where=where, fix=fix)


def _apply_fixups(con: duckdb.DuckDBPyConnection, fixups: Fixups, columns: list[Column], rules: TableRules) -> None:
    skips = [(name, row - i) for name, rows in fixups.skipped.items() for i, row in enumerate(sorted(set(rows)), 1)]
    if skips:  # row r was numbered as if no earlier row had been skipped: add the skipped rows before it
        con.execute("CREATE OR REPLACE TEMP TABLE hw_skips (file VARCHAR, t BIGINT)")
        con.executemany("INSERT INTO hw_skips VALUES (?, ?)", skips)
        con.execute("UPDATE hw_clean SET _row = _row + (SELECT count(*) FROM hw_skips s WHERE s.file = hw_clean._file AND s.t < hw_clean._row)")
    if fixups.recovered is not None and fixups.recovered.num_rows:
        con.register("hw_recovered_arrow", fixups.recovered)
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE hw_recovered AS SELECT * FROM hw_recovered_arrow")
        finally:
            con.unregister("hw_recovered_arrow")
        con.execute(f"INSERT INTO hw_clean {cleaning_select('hw_recovered', columns, rules)}")


def _quarantine(con: duckdb.DuckDBPyConnection, rules: TableRules, rejected: list[Rejected]) -> str:
    """One row per broken rule; a repeated key, one row per row holding it. Returns the SQL condition
    that keeps a row of hw_clean out of the quarantine."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE hw_quarantine AS SELECT _file AS source_file, _row AS row_number, p.column AS column_name, "
        "p.value AS original_value, p.rule AS rule, p.message AS message FROM (SELECT _file, _row, unnest(_problems) AS p FROM hw_clean WHERE NOT _empty)"
    )
    good = "NOT c._empty AND c._problems IS NULL"
    for number, key in enumerate(unique_keys(rules)):
        dups = f"hw_dup{number}"
        cols = ", ".join(ident(k) for k in key)
        not_null = " AND ".join(f"{ident(k)} IS NOT NULL" for k in key)
        joined = " AND ".join(f"c.{ident(k)} = d.{ident(k)}" for k in key)
        shown = " || ', ' || ".join(f"CAST(c.{ident(k)} AS VARCHAR)" for k in key)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {dups} AS SELECT {cols}, count(*) AS n FROM hw_clean WHERE NOT _empty AND {not_null} GROUP BY ALL HAVING count(*) > 1")
        con.execute(
            f"INSERT INTO hw_quarantine SELECT c._file, c._row, {literal(', '.join(key))}, {shown}, 'unique', "
            f"'the key ' || {literal(', '.join(key))} || ' = ' || {shown} || ' appears in ' || d.n || ' rows' "
            f"FROM hw_clean c JOIN {dups} d ON {joined} WHERE NOT c._empty"
        )
        good += f" AND NOT EXISTS (SELECT 1 FROM {dups} d WHERE {joined})"
    if rejected:
        con.execute("CREATE OR REPLACE TEMP TABLE hw_rejected (source_file VARCHAR, row_number BIGINT, column_name VARCHAR, original_value VARCHAR, rule VARCHAR, message VARCHAR)")
        con.executemany("INSERT INTO hw_rejected VALUES (?, ?, ?, ?, ?, ?)", [(r.file, r.row, r.column, r.value, r.rule, r.message) for r in rejected])
        con.execute("INSERT INTO hw_quarantine SELECT * FROM hw_rejected")
        good += " AND NOT EXISTS (SELECT 1 FROM hw_rejected r WHERE r.source_file = c._file AND r.row_number = c._row)"
    return good


@dataclass
class Report:
    rows_read: int  # data rows in the file(s), empty ones included
    empty: int
    loaded: int
    by_rule: dict[str, int]
    top: list[tuple[str | None, str, str | None, int]]  # (column, rule, value, rows)

    @property
    def bad_rows(self) -> int:
        return self.rows_read - self.empty - self.loaded

    def summary(self) -> str:
        text = f"{_count(self.rows_read, 'row')} read, {self.loaded:,} loaded, {self.bad_rows:,} quarantined"
        if self.by_rule:
            text += " (" + ", ".join(f"{rule} {n:,}" for rule, n in self.by_rule.items()) + ")"
        if self.empty:
            text += f", {_rows(self.empty)} skipped"
        return text

    def notes(self) -> list[str]:
        out = [f"{column or 'row'}: {_short(value)} x{n:,} ({rule})" for column, rule, value, n in self.top]
        if self.empty:
            out.append(f"{_rows(self.empty)} skipped")
        return out


def _rows(n: int) -> str:
    return _count(n, "empty row")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def _short(value: str | None, limit: int = 40) -> str:
    if value is None:
        return "(empty)"
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _report(con: duckdb.DuckDBPyConnection, good: str, rejected: list[Rejected]) -> Report:
    rows, empty = con.execute("SELECT count(*), count(*) FILTER (WHERE _empty) FROM hw_clean").fetchone()  # type: ignore[misc]
    loaded = con.execute(f"SELECT count(*) FROM hw_clean c WHERE {good}").fetchone()[0]  # type: ignore[index]
    by_rule = rules_breakdown(con, "hw_quarantine")
    top = con.execute(
        "SELECT column_name, rule, original_value, count(*) AS n FROM hw_quarantine GROUP BY ALL ORDER BY n DESC, column_name, rule, original_value LIMIT ?",
        [TOP_VALUES],
    ).fetchall()
    unstaged = 0  # rejected rows the reader left out of the staged relation (CSV); Excel keeps its rows in
    if rejected:
        unstaged = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT source_file, row_number FROM hw_rejected) r "
            "WHERE NOT EXISTS (SELECT 1 FROM hw_clean c WHERE c._file = r.source_file AND c._row = r.row_number)"
        ).fetchone()[0]  # type: ignore[index]
    return Report(rows + unstaged, empty, loaded, by_rule, top)


def rules_breakdown(con: duckdb.DuckDBPyConnection, quarantine: str) -> dict[str, int]:
    """Rows per broken rule, most first: {"allowed_values (region)": 12, "ragged_row": 1}."""
    rows = con.execute(
        f"SELECT rule, column_name, count(DISTINCT (source_file, row_number)) AS n FROM {quarantine} GROUP BY ALL ORDER BY n DESC, rule, column_name"
    ).fetchall()
    return {f"{rule} ({column})" if column else rule: n for rule, column, n in rows}


def _enforce_threshold(report: Report, rules: TableRules, where: str, warnings: list[str]) -> None:
    allowed = rules.allowed_bad_rows(report.rows_read - report.empty)
    if allowed is None or report.bad_rows <= allowed:
        return
    default = " by default" if rules.max_bad_rows == DEFAULT_MAX_BAD_ROWS and "max_bad_rows" not in rules.model_fields_set else ""
    limit = f"{rules.max_bad_rows} = {allowed:,} rows{default}" if isinstance(rules.max_bad_rows, str) else f"{allowed:,}"
    raise TooManyBadRows(
        f"{where}: {report.bad_rows:,} of {report.rows_read - report.empty:,} rows broke cleaning rules, more than max_bad_rows ({limit})",
        why="; ".join(f"{rule}: {n:,}" for rule, n in report.by_rule.items()) + ". Most frequent: " + "; ".join(report.notes()[:TOP_VALUES]) + "".join(f". {w}" for w in warnings),
        fix="The previous data was kept. Fix the file (the values above), or the rules in headwater.yml, or raise max_bad_rows.",
    )


def _swapped(fmt: str) -> str:
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


def ambiguous_dates(con: duckdb.DuckDBPyConnection, columns: list[Column]) -> list[str]:
    """A warning per date column whose declared day/month format may be the wrong way round: every
    value it parsed has a day of 12 or less (so would parse the other way too) while other values of
    the column did not parse, and some of those do with day and month swapped. That is what a
    month-first format does to day-first dates: the days past 12 fail, the others load swapped."""
    warnings = []
    for column in columns:
        rules = column.rules
        formats = [f for f in rules.formats if f != EXCEL_SERIAL and "%d" in f and "%m" in f]
        if rules.type not in ("date", "datetime") or not formats:
            continue
        name = ident(column.name)
        parsed, late = con.execute(f"SELECT count({name}), count({name}) FILTER (WHERE day({name}) > 12) FROM hw_clean WHERE NOT _empty").fetchone()  # type: ignore[misc]
        if not parsed or late:
            continue
        failed = con.execute("SELECT count(*) FROM hw_quarantine WHERE column_name = ? AND rule = 'type'", [column.name]).fetchone()[0]  # type: ignore[index]
        if not failed:
            continue
        others = [_swapped(f) for f in formats]
        fit = " OR ".join(f"(regexp_full_match(trim(original_value), {literal(format_regex(f))}) AND try_strptime(trim(original_value), {literal(f)}) IS NOT NULL)" for f in others)
        swapped, example = con.execute(
            f"SELECT count(*), min(trim(original_value)) FROM hw_quarantine WHERE column_name = ? AND rule = 'type' AND ({fit})", [column.name]
        ).fetchone()  # type: ignore[misc]
        if not swapped:  # the failures are something else ('31/02/2024', 'soon'): nothing says the order is wrong
            continue
        declared, other = " or ".join(repr(f) for f in formats), " or ".join(repr(f) for f in others)
        warnings.append(
            f"column {column.name}: the format {declared} may be the wrong way round: the {parsed:,} values it parsed all have a day of 12 or less, "
            f"while {failed:,} did not parse, {swapped:,} of them as {other} would (e.g. {example!r}). "
            f"The loaded dates may have day and month swapped: check format: for {column.name} in headwater.yml"
        )
    return warnings


def _write(con: duckdb.DuckDBPyConnection, names: list[str], target: Target, good: str, log: Callable[[str], None]) -> list[str]:
    """Replace the raw table, its quarantine and the sync state in one transaction. The table's rows
    are in no particular order (SQL tables have none): ``_headwater_row`` is the file's order."""
    schema, table = ident(target.schema), ident(target.table)
    quarantine_name = quarantine_table(target.table, target.raw.max_identifier)
    before = _columns(con, target.schema, target.table)
    ensure_state_table(con)
    selected = "".join(f"{item}, " for item in _stored(con, target.raw, "hw_clean", target.table, names, "c", "_row", "_file"))
    quarantined = ", ".join(_stored(con, target.raw, "hw_quarantine", quarantine_name, None, "q", "row_number", "source_file"))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(
            f"CREATE OR REPLACE TABLE {schema}.{table} AS SELECT {selected}_file AS {FILE_COLUMN}, _row AS {ROW_COLUMN}, now() AS {SYNCED_AT} "
            f"FROM hw_clean c WHERE {good}"
        )
        con.execute(
            f"CREATE OR REPLACE TABLE {schema}.{ident(quarantine_name)} AS SELECT {quarantined}, now() AS {SYNCED_AT} FROM hw_quarantine q "
            "ORDER BY source_file, row_number, column_name, rule"
        )
        change = Change(target.source, target.schema, target.table, [], None, target.state, full=True, also=[quarantine_name], log=log)
        target.raw.before_commit(con, change)
        save_state(con, target.source, target.table, target.state)
        con.execute("COMMIT")
    except BaseException as exc:
        con.execute("ROLLBACK")
        target.raw.rolled_back(con)
        refused = refused_error(target.source, str(exc)) if isinstance(exc, duckdb.Error) else None
        if refused is not None:
            raise refused from None
        raise
    target.raw.after_commit(con, change)
    return _changes(before, _columns(con, target.schema, target.table))


def _stored(con: duckdb.DuckDBPyConnection, raw: RawTarget, relation: str, table: str, names: list[str] | None, alias: str, row: str, file: str) -> list[str]:
    """The select items writing ``names`` (None: every column) of ``relation`` into raw's ``table``
    the way database sources write theirs (`headwater.sync.sql.stored_select`): cast to what the
    warehouse stores, and a value it would store as another (a NUL byte in PostgreSQL's text) stops
    the table with an error naming the column, the row and its file."""
    kinds = {str(name): str(kind) for name, kind, *_ in con.execute(f"DESCRIBE {relation}").fetchall()}
    where = f"CAST({alias}.{row} AS VARCHAR) || ' of ' || {alias}.{file}"
    return [stored_select(raw, table, RawColumn(name, kinds[name], kinds[name]), alias, where, row="row") for name in (kinds if names is None else names)]


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return dict(rows)


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    if not before:
        return []
    changes = [f"added column {name} {kind}" for name, kind in after.items() if name not in before]
    changes += [f"removed column {name}" for name in before if name not in after]
    changes += [f"column {name}: {before[name]} -> {kind}" for name, kind in after.items() if name in before and before[name] != kind]
    return changes
