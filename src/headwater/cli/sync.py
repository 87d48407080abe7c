"""`headwater sync [SOURCE [TABLE...]]`: sync sources into the warehouse's raw schemas, nothing else."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from headwater.cli.console import err, out
from headwater.cli.helptext import DATA
from headwater.cli.options import ProjectOpt


def register(app: typer.Typer) -> None:
    app.command("sync", rich_help_panel=DATA)(sync)


def sync(
    source: Annotated[str | None, typer.Argument(help="Source to sync (default: every source).", show_default=False)] = None,
    tables: Annotated[list[str] | None, typer.Argument(help="Only these tables of the source.", show_default=False)] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Ignore saved state: reload the tables in full (e.g. after an incompatible type change).")] = False,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary instead of tables.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Drop raw tables the source no longer has (or no longer selects), with their sync state.")] = False,
) -> None:
    """Sync sources into raw_<source> tables: only what changed, merged on the key, deletes applied.

    Each table commits on its own, with its sync state: a sync stopped at any moment is carried on
    by the next one. Published data is not touched (a pipeline run builds and publishes).
    A table that fails does not stop the others: they sync, and the run fails at the end listing
    every failure. Exit code 0 on success; when tables failed, 2 if every failure is one to fix in the
    project file or the source's data, 75 if every one may pass by itself (unreachable server), else 1;
    2 for a bad project file."""
    from headwater.cli.main import _project
    from headwater.errors import HeadwaterError
    from headwater.orchestrate.sync import run_sync

    started = time.perf_counter()  # after the imports, like a library call
    loaded = _project(project)
    console = err if as_json else out
    # The run's log lines reach the terminal through the listener, its error through the CLI's funnel
    # (the logger `headwater.run` prints nothing: console.install_logging).
    try:
        with _TableProgress(console, enabled=not as_json and console.is_terminal) as progress:
            run_id, results = run_sync(
                loaded,
                source,
                tables,
                full_refresh=full_refresh,
                prune=prune,
                listener=None if as_json else _printer(console, progress),
                progress=progress.update if progress.enabled else None,
                wait_for_lock=30,
                on_wait=lambda: console.print("Another run of this project is in progress; waiting for it to finish…"),
            )
    except HeadwaterError as exc:  # print what did sync; the caller's funnel prints the error once
        if exc.sync_report is not None and exc.sync_report[1]:
            _report(*exc.sync_report, seconds=round(time.perf_counter() - started, 3), as_json=as_json, error=exc.render())
        raise
    _report(run_id, results, seconds=round(time.perf_counter() - started, 3), as_json=as_json)  # the project file, system database, sources and warehouse


def _report(run_id: int, results: dict[str, list[Any]], *, seconds: float, as_json: bool, error: str | None = None) -> None:
    if as_json:
        data = {"run": run_id, "seconds": seconds, "sources": {name: [s.as_dict() | {"rows_per_second": round(s.rows_per_second)} for s in stats] for name, stats in results.items()}}
        out.print_json(data=data | ({"error": error} if error else {}))
        return
    for name, stats in results.items():
        table = Table(title=f"source {name} → raw_{name} (run {run_id})", title_justify="left")
        for column in ("table", "mode", "read", "written", "deleted", "quarantined", "rows in raw", "rows/s", "seconds"):
            table.add_column(column, justify="left" if column in ("table", "mode") else "right")
        for s in stats:
            table.add_row(s.table, s.mode, f"{s.rows_read:,}", f"{s.upserted:,}", f"{s.deleted:,}", f"{s.quarantined:,}", f"{s.rows:,}", f"{s.rows_per_second:,.0f}", f"{s.seconds:.1f}")
        out.print(table)
        for s in stats:
            for change in s.schema_changes:
                out.print(f"  [yellow]{s.table}: schema change:[/] {change}", highlight=False)
            for rule, count in s.quarantine_by_rule.items():
                out.print(f"  [yellow]{s.table}: quarantined by {rule}:[/] {count:,}", highlight=False)
            for note in s.notes:
                out.print(f"  {s.table}: {note}", highlight=False)


def _printer(console: Console, progress: _TableProgress) -> Any:
    """Prints the run's log lines as they come. Not its error: the CLI's funnel prints that once, and
    the run's log (`headwater logs`) keeps it."""
    def listen(level: str, message: str) -> None:
        if level == "warn":
            console.print(f"[yellow]{level}[/]: {message}", highlight=False)
        elif level != "error" and not progress.enabled:
            console.print(message, highlight=False)

    return listen


class _TableProgress:
    """One Rich progress bar per table while it loads (rows, rows/s); silent when not on a terminal."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f} rows"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _TableProgress:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()

    def update(self, table: str, done: int, expected: int | None) -> None:
        if table not in self.tasks:
            self.tasks[table] = self.bar.add_task(table, total=expected, rate="")
        task = self.tasks[table]
        elapsed = self.bar.tasks[task].elapsed or 0
        self.bar.update(task, completed=done, total=expected or done, rate=f"{done / elapsed:,.0f} rows/s" if elapsed > 0.5 else "")
