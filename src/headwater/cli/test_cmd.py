"""`headwater test [PIPELINE]`: dbt's tests and the pipeline's checks against what is built, nothing synced or published."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.markup import escape

from headwater.cli.console import err, out
from headwater.cli.options import ProjectOpt


def register(app: typer.Typer) -> None:
    app.command("test", rich_help_panel="Data")(test)


def test(
    pipeline: Annotated[str | None, typer.Argument(help="Pipeline whose tests and checks to run (needed when the project has several).", show_default=False)] = None,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary instead of the log.")] = False,
) -> None:
    """Run a pipeline's dbt tests and checks against what is built now: no sync, build or publish.

    The tests are those of the pipeline's select: (default: all). Exit code 0 when all pass
    (warnings included), 1 when a test or check failed (each named), 2 for a user error (nothing
    built yet, a bad project file)."""
    from headwater.cli.main import _project
    from headwater.orchestrate.testing import test_pipeline

    loaded = _project(project)
    run_log = logging.getLogger("headwater.run")  # its lines reach the terminal through the listener, once
    run_log.addHandler(logging.NullHandler())  # else logging's last resort prints its warnings again
    run_log.propagate = False  # and a handler dbt may have put on the root logger

    def listen(level: str, message: str) -> None:
        if not as_json and level == "info":  # failures and warnings: listed below, once each
            err.print(f"[dim] info[/] {escape(message)}", highlight=False)

    report = test_pipeline(loaded, pipeline, listener=listen, wait_for_lock=30, on_wait=lambda: err.print("Another run of this project is in progress; waiting for it to finish…"))
    if as_json:
        out.print_json(
            data={
                "run": report.run_id,
                "pipeline": report.pipeline,
                "passed": sum(o.status == "pass" for o in report.outcomes),
                "failed": [{"name": o.name, "kind": o.kind, "status": o.status, "message": o.message} for o in report.failed],
                "warned": [{"name": o.name, "kind": o.kind, "status": o.status, "message": o.message} for o in report.warned],
            }
        )
    else:
        for o in report.failed:
            err.print(f"[bold red]FAIL[/] {o.kind} {escape(o.name)}: {escape((o.message or o.status).splitlines()[0])}", highlight=False)
        for o in report.warned:
            err.print(f"[yellow]WARN[/] {o.kind} {escape(o.name)}: {escape((o.message or o.status).splitlines()[0])}", highlight=False)
        passed = sum(o.status == "pass" for o in report.outcomes)
        colour = "red" if report.failed else "green"
        out.print(
            f"[{colour}]Test run {report.run_id}[/] (pipeline {escape(report.pipeline)}): {passed} passed, {len(report.failed)} failed, {len(report.warned)} warned."
            + (f" See the failing rows: headwater logs {report.run_id}" if report.failed else ""),
            highlight=False,
        )
    if report.failed:
        raise typer.Exit(1)
