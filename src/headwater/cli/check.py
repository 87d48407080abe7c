"""`headwater check [PIPELINE]`: the project checked without a run — its file, dbt project,
dashboards and sources — each problem printed once with its fix. Exit 0 when clean, 2 when not."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from headwater.cli.console import out
from headwater.cli.options import ProjectOpt
from headwater.errors import ExitCode


def register(app: typer.Typer) -> None:
    app.command("check", rich_help_panel="Project")(check)


def check(
    pipeline: Annotated[str | None, typer.Argument(help="Check this pipeline's sources (default: the project's only pipeline, or every source).", show_default=False)] = None,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable report instead of text.")] = False,
) -> None:
    """Check the project without running it: headwater.yml, the dashboards (against the published
    tables, or dbt's models before anything is published), `dbt parse`, and that each source can be
    reached (connected to and its tables listed; no data is moved).

    Exit code 0 when nothing is wrong (warnings included), 2 when the project has problems."""
    from headwater.cli.main import _project
    from headwater.config import PROJECT_FILE
    from headwater.services.check import check_project

    report = check_project(lambda: _project(project), pipeline, file=(project or Path()) / PROJECT_FILE)
    if as_json:
        out.print_json(data=report.as_dict())
    else:
        for area in report.areas:
            mark = {"ok": "[green]ok[/]", "problems": "[red]problems[/]", "warnings": "[yellow]warnings[/]", "skipped": "[dim]skipped[/]"}[area.status]
            out.print(f"{mark} {escape(area.name)}: {escape(area.detail)}", highlight=False, soft_wrap=True)
        for problem in report.problems:
            label = "[bold red]Problem[/]" if problem.severity == "error" else "[bold yellow]Warning[/]"
            out.print(f"\n{label} ({escape(problem.area)}) {escape(problem.what)}", highlight=False, soft_wrap=True)
            if problem.fix:
                out.print(f"Fix: {escape(problem.fix)}", highlight=False, soft_wrap=True)
        errors = sum(p.severity == "error" for p in report.problems)
        warnings = len(report.problems) - errors
        said = f"{errors} problem(s) found" if errors else "No problems found"
        out.print(f"\n{said}" + (f", {warnings} warning(s)." if warnings else "."), highlight=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.USER_ERROR))
