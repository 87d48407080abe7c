"""`headwater status [PIPELINE]`: each pipeline's last and next run, its sources' freshness, and what is published."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli.console import out
from headwater.cli.options import ProjectOpt


def register(app: typer.Typer) -> None:
    app.command("status", rich_help_panel="Project")(status)


def status(
    pipeline: Annotated[str | None, typer.Argument(help="Only this pipeline (default: every pipeline).", show_default=False)] = None,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")] = False,
) -> None:
    """Each pipeline's last and next run, its source tables' freshness, and what is published.

    Per pipeline: the last run (status, when, how long), the next scheduled run, when each source
    table was last synced and its rows; and what readers see now (snapshot, when, tables)."""
    from headwater.cli.main import _project
    from headwater.services.describe import local_time, until
    from headwater.services.status import project_status, status_json
    from headwater.system import open_system_db

    loaded = _project(project)
    now = dt.datetime.now(dt.UTC)
    db = open_system_db(loaded)
    try:
        pipelines, published = project_status(loaded, db, now, pipeline)
    finally:
        db.close()
    if as_json:
        out.print_json(data=status_json(pipelines, published, now))
        return
    for p in pipelines:
        out.print(f"[bold]Pipeline {escape(p.name)}[/]", highlight=False)
        if p.last_run is None:
            out.print("  last run: never (start one with `headwater run`)", highlight=False)
        else:
            r = p.last_run
            colour = {"success": "green", "failed": "red"}.get(r.status, "yellow")
            took = f", took {r.duration.total_seconds():.1f}s" if r.duration else ""
            out.print(f"  last run: {r.id} [{colour}]{r.status}[/], started {r.started_at:%Y-%m-%d %H:%M:%S} UTC ({_ago(now, r.started_at)}){took}", highlight=False)
            if r.status != "success" and p.last_success is not None:
                out.print(f"  last success: run {p.last_success.id}, {p.last_success.started_at:%Y-%m-%d %H:%M:%S} UTC ({_ago(now, p.last_success.started_at)})", highlight=False)
            if r.status == "failed" and r.error:
                out.print(f"  error: {escape(r.error.splitlines()[0])}  (see `headwater logs {r.id}`)", highlight=False)
        if p.schedule and p.next_run:
            out.print(f"  next run: {local_time(p.next_run, p.schedule.timezone)} ({until(p.next_run, now)}), schedule '{p.schedule.cron}'", highlight=False)
        else:
            out.print("  next run: not scheduled (no schedule: in headwater.yml)", highlight=False)
        if p.tables:
            table = Table(box=None, padding=(0, 2, 0, 2))
            for column in ("source", "table", "last synced (UTC)", "age", "rows in raw"):
                table.add_column(column, no_wrap=True, justify="right" if column == "rows in raw" else "left")
            for t in p.tables:
                synced = f"{t.synced_at:%Y-%m-%d %H:%M}" if t.synced_at else "never"
                note = " [red](last sync failed)[/]" if t.last_failed else ""
                table.add_row(t.source, t.table, synced + note, _ago(now, t.synced_at) if t.synced_at else "-", f"{t.rows:,}" if t.rows is not None else "-")
            out.print(table)
        else:
            out.print("  sources: not synced yet", highlight=False)
    if published is None:
        out.print("[bold]Published:[/] nothing yet: readers see data after the first successful run.", highlight=False)
        return
    by = f" by run {published.run_id}" if published.run_id is not None else ""
    out.print(f"[bold]Published:[/] {escape(published.snapshot)}{by}, {published.at:%Y-%m-%d %H:%M:%S} UTC ({_ago(now, published.at)})", highlight=False)
    if published.fallback:
        out.print(f"  [yellow]{escape(published.fallback)}[/]", highlight=False)
    for name, rows in published.tables.items():
        out.print(f"  {escape(name)}: {rows:,} rows", highlight=False)


def _ago(now: dt.datetime, moment: dt.datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 90:
        return f"{seconds}s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min ago"
    return f"{seconds // 86400} days ago"
