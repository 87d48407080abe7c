"""`headwater query "SQL"` and `headwater shell`: read-only SQL on the published data, or on raw.

Read-only is enforced by DuckDB (a read-only connection with external access off: publish/query.py),
never by looking at the SQL. `--raw` opens the build database, which runs write: it is read under
the project's writer lock, so a run waits for the query (or the shell) to end instead of failing.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli.console import err, out
from headwater.cli.options import ProjectOpt
from headwater.errors import HeadwaterError

if TYPE_CHECKING:
    from headwater.publish.query import Result


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


RawOpt = Annotated[bool, typer.Option("--raw", help="Read the build database (raw_<source> tables, dbt's schemas) instead of the published tables. Runs wait while it is open.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the rows as a JSON array of objects.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print the rows as CSV with a header line.")]


def register(app: typer.Typer) -> None:
    app.command("query", rich_help_panel="Data")(query)
    app.command("shell", rich_help_panel="Data")(shell)


def query(
    sql: Annotated[str, typer.Argument(help="One SQL statement (DuckDB's dialect), e.g. \"select region, sum(total_signups) from flake_rate_weekly group by 1\".", show_default=False)],
    raw: RawOpt = False,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Run one read-only SQL query on the published data (what dashboards show) and print the rows.

    Anything that would change data is refused by the database (exit 2). On an install with many
    organisations, an organisation's project sees only its own data."""
    from headwater.publish import query as q

    fmt = _format(as_json, as_csv)
    with _session(project, raw) as (con, _target):
        result = q.run(con, sql)
    _print(result, fmt)


def shell(raw: RawOpt = False, as_json: JsonOpt = False, as_csv: CsvOpt = False, project: ProjectOpt = None) -> None:
    """An interactive read-only SQL prompt on the published data (or raw with --raw).

    End a statement with ; to run it. `.tables` lists the tables, `.quit` (or Ctrl+D) leaves. With
    standard input not a terminal, the statements are read from it (a script); the exit code is
    then 2 if any of them failed."""
    from headwater.publish import query as q

    fmt = _format(as_json, as_csv)
    interactive = sys.stdin.isatty()
    failed = 0
    with _session(project, raw) as (con, target):
        if interactive:
            err.print(f"Connected read-only to the {escape(target.what)}. End statements with ;  .tables lists the tables, .quit leaves.", highlight=False)
            if raw:
                err.print("Runs of this project wait until this shell ends.", highlight=False)
        for statement in _statements(interactive):
            if statement in (".quit", ".exit", ".q"):
                break
            try:
                if statement == ".tables":
                    _print(q.tables(con), fmt)
                elif statement.startswith("."):
                    raise HeadwaterError(f"Unknown command {statement}", fix="The shell knows .tables and .quit; anything else is SQL ending with ;")
                else:
                    _print(q.run(con, statement), fmt)
            except HeadwaterError as exc:
                failed += 1
                err.print(f"[bold red]Error:[/] {escape(exc.render())}", highlight=False)
    if failed and not interactive:
        raise typer.Exit(2)


def _format(as_json: bool, as_csv: bool) -> Format:
    if as_json and as_csv:
        raise HeadwaterError("--json and --csv cannot be combined", fix="Choose one of them (without either: a table).")
    return Format.json if as_json else Format.csv if as_csv else Format.table


@contextmanager
def _session(project: Path | None, raw: bool) -> Iterator[tuple[Any, Any]]:
    from headwater.cli.main import _project
    from headwater.publish import query as q
    from headwater.warehouse import open_warehouse

    loaded = _project(project)
    warehouse = open_warehouse(loaded.root, loaded.config.warehouse, loaded.confinement)
    target = q.raw_target(warehouse, loaded.config.warehouse.type) if raw else q.published_target(warehouse)
    if target.fallback:
        err.print(f"[yellow]Warning:[/] {escape(target.fallback)}", highlight=False)
    with warehouse.writer_lock() if raw else nullcontext(), q.session(target) as con:
        yield con, target


def _statements(interactive: bool) -> Iterator[str]:
    """Statements as typed: lines gathered until one ends with ; (a dot-command is a line of its own)."""
    pending: list[str] = []
    while True:
        if interactive:
            try:
                line = input("sql> " if not pending else "...> ")
            except EOFError:
                line = None
        else:
            read = sys.stdin.readline()
            line = read if read else None
        if line is None:
            if "".join(pending).strip():
                yield "\n".join(pending).strip().rstrip(";")
            return
        stripped = line.strip()
        if not pending and stripped.startswith("."):
            yield stripped
            continue
        pending.append(line.rstrip("\n"))
        if stripped.endswith(";"):
            text = "\n".join(pending).strip()
            pending = []
            if text.rstrip(";").strip():
                yield text


def _print(result: Result, fmt: Format) -> None:
    from headwater.publish.query import plain

    if fmt is Format.json:
        data = [{c: plain(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows]
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    elif fmt is Format.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if result.columns:
            writer.writerow(result.columns)
        writer.writerows(["" if v is None else _csv_text(v) for v in row] for row in result.rows)
    elif not result.columns:
        out.print("OK", highlight=False)
    else:
        table = Table(*result.columns, box=None, header_style="bold")
        for row in result.rows:
            table.add_row(*(escape("NULL" if v is None else str(v)) for v in row))
        out.print(table, highlight=False)
        err.print(f"[dim]{len(result.rows):,} row{'s' if len(result.rows) != 1 else ''}[/]", highlight=False)
    sys.stdout.flush()


def _csv_text(value: Any) -> Any:
    from headwater.publish.query import plain

    text = plain(value)
    return json.dumps(text) if isinstance(text, (list, dict)) else text
