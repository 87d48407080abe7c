"""Dashboards checked against the tables they read, before a viewer opens them.

A chart that names a column its table lacks would be an error on the page of every viewer. Every
run checks each dashboard against the tables it is about to publish (a check of kind "dashboard",
before publishing, so a dashboard the new data would break keeps the previous publication), and
`headwater check` against what is published now.

The check runs the real queries of the page — each chart's, each filter's options and bounds —
through the same code (dashboards/query.py), on an `Outline`: an in-memory database holding the
published tables' columns and types and no rows. Every column, measure, flag, filter and chart SQL
is then bound by DuckDB exactly as the page binds it, and nothing reads the data.

What is reported, and what it blocks:

- a dashboard file that does not load (invalid YAML, an unknown key): reported (warn), never blocks
  a publish: the data is not what is wrong, and the server keeps the file's last good version;
- a chart, filter or table that does not fit the tables: blocks the publish (error);
- a table that is not published yet but that another pipeline publishes: reported (warn).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb

from headwater.checks.outcome import CheckOutcome
from headwater.config.loader import DASHBOARDS_DIR, PROJECT_FILE
from headwater.config.model import Dashboard, Filter, LoadedProject
from headwater.dashboards.query import DATE_TYPES, chart_query, date_bounds, fetch, filter_options
from headwater.errors import HeadwaterError
from headwater.publish import Column, PublishedData, PublishPlan
from headwater.sqltext import ident
from headwater.warehouse import WarehouseEngine, connect

KIND = "dashboard"
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One problem of one dashboard, said once."""

    dashboard: str  # its name (its URL's)
    file: str  # where it is written: dashboards/<name>.yml, or headwater.yml
    part: str  # "chart 2 ('Completed vs flaked')", "filter 'region'", "table 'x'", "the file"
    what: str
    fix: str | None
    blocking: bool  # viewers of the publication checked would see an error: a run does not publish it

    @property
    def message(self) -> str:
        return f"{self.file}: {self.part}: {self.what}"

    def as_dict(self) -> dict[str, object]:
        return {"dashboard": self.dashboard, "file": self.file, "part": self.part, "message": self.message, "fix": self.fix, "blocking": self.blocking}


class Outline(PublishedData):
    """Tables with their columns and no rows, read as published data is read: the dashboards' queries
    bind against it as against the real snapshot, and cost nothing to run."""

    def __init__(self, tables: Mapping[str, Sequence[Column]]) -> None:  # no warehouse behind it: PublishedData.__init__ is not called
        self._lock = threading.Lock()
        self._snapshot = None
        con = connect(":memory:")  # as snapshots are opened: extensions (ICU for time zones) from the installed packages
        for table, columns in tables.items():
            con.execute(f"CREATE TABLE {ident(table)} ({', '.join(f'{ident(c.name)} {_creatable(con, c.type)}' for c in columns)})")
        con.execute("SET python_enable_replacements = false")
        con.execute("SET enable_external_access = false")  # a chart's SQL reads these tables and nothing else, as on the page
        self._con: duckdb.DuckDBPyConnection | None = con

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise ValueError("the outline is closed")
        return self._con


def _creatable(con: duckdb.DuckDBPyConnection, type_name: str) -> str:
    """``type_name`` if DuckDB can make a column of it here (a type defined in the snapshot cannot be), else VARCHAR."""
    try:
        con.execute(f"SELECT CAST(NULL AS {type_name})")
    except duckdb.Error:
        return "VARCHAR"
    return type_name


def dashboard_file(project: LoadedProject, name: str) -> str:
    """Where dashboard ``name`` is written, relative to the project folder."""
    if name in project.broken_dashboards:
        path = project.broken_dashboards[name].file
        return str(path.relative_to(project.root)) if path.is_relative_to(project.root) else str(path)
    for suffix in (".yml", ".yaml"):
        if (project.root / DASHBOARDS_DIR / f"{name}{suffix}").is_file():
            return f"{DASHBOARDS_DIR}/{name}{suffix}"
    return f"{PROJECT_FILE} (dashboards.{name})"


def check_dashboards(project: LoadedProject, data: PublishedData, *, later: Collection[str] = ()) -> list[Finding]:
    """Every problem of every dashboard of ``project`` against the tables of ``data``. ``later``:
    tables another pipeline publishes, not in ``data`` yet (a chart over one is reported, not blocking)."""
    findings = [
        Finding(name, dashboard_file(project, name), "the file", broken.what + (f" ({broken.why})" if broken.why else ""), broken.fix, blocking=False)
        for name, broken in project.broken_dashboards.items()
    ]
    tables = set(data.tables())
    for name, board in project.config.dashboards.items():
        findings += check_dashboard(data, name, dashboard_file(project, name), board, tables, later)
    return findings


def check_dashboard(data: PublishedData, name: str, file: str, board: Dashboard, tables: set[str], later: Collection[str] = ()) -> list[Finding]:
    found: list[Finding] = []
    said: set[str] = set()  # a filter's problem fails every chart it applies to: said once, at the filter

    def add(part: str, exc: HeadwaterError, blocking: bool = True) -> None:
        what = exc.what + (f" ({exc.why})" if exc.why else "")
        if what not in said:
            said.add(what)
            found.append(Finding(name, file, part, what, exc.fix, blocking))

    def table_present(table: str, part: str) -> bool:
        if table in tables:
            return True
        add(part, _missing_table(table, tables, later), blocking=table not in later)
        return False

    if table_present(board.table, "its table"):
        types = {c.name: c.type for c in data.columns(board.table)}
        for spec in board.filters:
            try:
                _check_filter(data, board, spec, types)
            except HeadwaterError as exc:
                add(f"filter '{spec.label or spec.key}'", exc)
    for index, chart in enumerate(board.charts):
        part = f"chart {index + 1} ('{chart.title}')"
        if chart.sql is None and not table_present(chart.table or board.table, part):
            continue
        try:
            fetch(data, chart, chart_query(data, board, chart, {}), 1)
        except HeadwaterError as exc:
            missing = _MISSING_TABLE.search(exc.why or "") if chart.sql is not None else None
            table = missing.group(1).strip("\"'`!") if missing else None
            if chart.sql is None and (exc.why or "").startswith("Binder Error"):  # a measure's column: name the table's
                own = chart.table or board.table
                exc = HeadwaterError(exc.what, why=exc.why, fix=f"Columns of {own}: {', '.join(sorted(c.name for c in data.columns(own)))}.")
            add(part, exc, blocking=table not in later)
    return found


def _check_filter(data: PublishedData, board: Dashboard, spec: Filter, types: Mapping[str, str]) -> None:
    if spec.type != "multi" and spec.column in types and types[spec.column] not in DATE_TYPES:
        raise HeadwaterError(  # as the charts' queries say it (dashboards/query.py), so it is said once
            f"The {spec.type.replace('_', ' ')} filter {spec.label or spec.key!r} of dashboard '{board.title}' needs a date or timestamp column",
            why=f"column '{spec.column}' of table '{board.table}' is {types[spec.column]}",
            fix="Use a multi filter for this column, or a date column for this filter.",
        )
    try:
        if spec.type == "date_range":
            date_bounds(data, board, spec.key)
        else:
            filter_options(data, board, spec.key, limit=1)
    except duckdb.Error as exc:
        raise HeadwaterError("its options could not be computed", why=str(exc).splitlines()[0], fix="Check the filter's column in the dashboard's file.") from None


def _missing_table(table: str, tables: set[str], later: Collection[str]) -> HeadwaterError:
    if table in later:
        return HeadwaterError(f"table '{table}' is not published yet", why="another pipeline publishes it, and none has yet", fix="Run the pipeline that publishes it.")
    return HeadwaterError(
        f"table '{table}' is not published",
        fix=f"Name a published table ({', '.join(sorted(tables)) or 'none yet'}), or add the model to a pipeline's publish: list in {PROJECT_FILE}.",
    )


def outcomes(project: LoadedProject, findings: list[Finding]) -> list[CheckOutcome]:
    """One check result per dashboard (in the run's checks, kind "dashboard"): pass, fail when a
    finding blocks the publish, warn when the findings only report."""
    names = [*project.config.dashboards, *(n for n in project.broken_dashboards if n not in project.config.dashboards)]
    results = []
    for name in names:
        mine = [f for f in findings if f.dashboard == name]
        blocking = any(f.blocking for f in mine)
        results.append(
            CheckOutcome(
                name=dashboard_file(project, name),
                kind=KIND,
                status="pass" if not mine else "fail" if blocking else "warn",
                severity="error" if blocking or not mine else "warn",
                observed=f"{len(mine)} problem(s)" if mine else None,
                message=" | ".join(f"{f.part}: {f.what}" + (f" Fix: {f.fix}" if f.fix else "") for f in mine) or None,
            )
        )
    return results


def snapshot_outline(data: PublishedData, tables: Collection[str] | None = None) -> Outline:
    """The outline of what ``data`` publishes now (``tables``: only these)."""
    names = data.tables() if tables is None else tables
    return Outline({t: data.columns(t) for t in names})


@contextmanager
def outline_of_plan(publish_plan: PublishPlan, warehouse: WarehouseEngine, build: Any) -> Iterator[Outline]:
    """The outline of what a run is about to publish: the tables it built (described in the build
    area, `WarehouseEngine.relation_columns`) and those it carries over from what is published now."""
    tables = {name: [Column(n, t) for n, t in warehouse.relation_columns(build, relation)] for name, relation in publish_plan.fresh.items()}
    if publish_plan.carried:
        current = PublishedData(warehouse)
        try:
            tables |= {name: current.columns(name) for name in publish_plan.carried}
        finally:
            current.close()
    outline = Outline(tables)
    try:
        yield outline
    finally:
        outline.close()



def check_documented(project: LoadedProject, documented: Mapping[str, tuple[Sequence[str], bool]], publishable: Collection[str]) -> list[Finding]:
    """Before anything is published: each dashboard's tables must be models a pipeline publishes, and
    the columns it names (filters, x, series, group_by, rows, columns, where) among those its model's
    YAML documents, where it documents any (``documented``: model -> its columns, and whether they are
    all of them: an enforced contract). A column missing from a partial list is reported, not
    blocking. Measures and chart SQL need the built tables: they are checked by every run (and by
    `headwater check` once something is published)."""
    findings = [
        Finding(name, dashboard_file(project, name), "the file", broken.what + (f" ({broken.why})" if broken.why else ""), broken.fix, blocking=False)
        for name, broken in project.broken_dashboards.items()
    ]
    for name, board in project.config.dashboards.items():
        file = dashboard_file(project, name)
        said: set[str] = set()

        def named(part: str, table: str, columns: list[str], file: str = file, name: str = name, said: set[str] = said) -> None:
            blocking = True
            if table not in publishable:
                what, fix = f"table '{table}' is no model a pipeline publishes", f"Name a published model ({', '.join(sorted(publishable)) or 'none'}), or add it to a pipeline's publish: list."
            elif table in documented and (unknown := [c for c in columns if c not in documented[table][0]]):
                known, blocking = documented[table]
                what = f"uses column '{unknown[0]}', which model '{table}' " + ("does not have (its contract lists every column)" if blocking else "does not document")
                fix = f"Columns of {table} (its YAML): {', '.join(known)}." + ("" if blocking else " If the model has it, document it there; the first run checks it for sure.")
            else:
                return
            if what not in said:
                said.add(what)
                findings.append(Finding(name, file, part, what, fix, blocking=blocking))

        named(f"table '{board.table}'", board.table, [])
        for spec in board.filters:
            named(f"filter '{spec.label or spec.key}'", board.table, [spec.column])
        for index, chart in enumerate(board.charts):
            if chart.sql is None:
                columns = [*chart.kind.dimensions(chart), *(c for c in (chart.where, chart.compare.where if chart.compare else None) if c)]
                named(f"chart {index + 1} ('{chart.title}')", chart.table or board.table, [c for c in columns if c])
    return findings


__all__ = ["KIND", "Finding", "Outline", "check_dashboard", "check_dashboards", "check_documented", "dashboard_file", "outcomes", "outline_of_plan", "snapshot_outline"]
