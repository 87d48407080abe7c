"""`headwater dbt ARGS...` (dbt with the generated profile) and `headwater docs` (dbt's docs, built and served)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from headwater.cli.console import err, out
from headwater.cli.options import ProjectOpt
from headwater.errors import HeadwaterError

HELD_FLAGS = ("--profiles-dir", "--project-dir", "--profile")  # what would take an organisation's dbt past its hold


def register(app: typer.Typer) -> None:
    app.command("dbt", rich_help_panel="Data", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}, add_help_option=False)(dbt)
    app.command("docs", rich_help_panel="Data")(docs)


def dbt(ctx: typer.Context, project: ProjectOpt = None) -> None:
    """Run dbt itself on the project, with the profile Headwater generates; dbt's exit code.

    E.g. `headwater dbt ls`, `headwater dbt build --select stg_campaign__signups`; dbt's own help for a command: `headwater dbt build --help`.
    Waits for no run: while one is in progress it stops with exit 3 (dbt would find the build database busy)."""
    args = list(ctx.args)
    if args in ([], ["--help"], ["-h"]):  # this help, in or out of a project
        out.print(ctx.get_help(), highlight=False)
        raise typer.Exit(0)

    def run(loaded: Any, dbt_project: Any) -> int:
        moved = [a for a in args if a.split("=", 1)[0] in HELD_FLAGS]
        if loaded.confinement is not None and moved:
            raise HeadwaterError(
                f"{moved[0].split('=', 1)[0]} cannot be given for an organisation's project",
                why="an organisation's dbt runs with the profile and project Headwater holds to its folder; another would reach past it",
                fix="Leave the flag out: headwater dbt uses the organisation's own profile and project.",
            )
        return _run(dbt_project, args)

    code = _with_project(project, run)
    raise typer.Exit(code)


def docs(
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the docs on localhost after building them (--no-serve: build only and print where they are).")] = True,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free port).")] = 8580,
    project: ProjectOpt = None,
) -> None:
    """Build dbt's documentation site (dbt docs generate) and serve it on localhost.

    The site shows models, columns, tests, lineage, and the built tables' types and sizes."""
    from headwater.errors import RunFailed
    from headwater.transform.passthrough import DOCS_FILES, docs_folder

    folder: Path | None = None

    def build(loaded: Any, dbt_project: Any) -> int:
        nonlocal folder
        folder = docs_folder(dbt_project)
        return _run(dbt_project, ["docs", "generate", "--quiet"])

    code = _with_project(project, build)
    if code != 0 or folder is None:
        kind = HeadwaterError if code == 2 else RunFailed  # dbt's 2: the project or a flag is wrong
        raise kind("dbt could not generate the docs", why="dbt's error is printed above", fix="Fix what it names (`headwater dbt parse` checks the project), then run again.")
    index = folder / DOCS_FILES[0]
    if not serve:
        out.print(f"Built the dbt docs: {index}", highlight=False, soft_wrap=True)
        out.print(f"Serve them with `headwater docs`, or open {index} next to its manifest.json and catalog.json with any static web server.", highlight=False, soft_wrap=True)
        return
    server = http.server.ThreadingHTTPServer((host, port), _handler(folder))
    out.print(f"Serving the dbt docs on [link]http://{host}:{server.server_address[1]}/[/link]  (Ctrl+C to stop)", highlight=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


def _handler(folder: Path) -> type[http.server.BaseHTTPRequestHandler]:
    from headwater.transform.passthrough import DOCS_FILES

    class Docs(http.server.BaseHTTPRequestHandler):
        """The three files of dbt's docs site, and nothing else of the target folder (compiled SQL, run results)."""

        def do_GET(self) -> None:
            name = self.path.split("?", 1)[0].lstrip("/") or DOCS_FILES[0]
            if name not in DOCS_FILES or not (folder / name).is_file():
                self.send_error(404, "Not found")
                return
            body = (folder / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8" if name.endswith(".html") else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            err.print(f"[dim]{escape(self.address_string())} {escape(format % args)}[/]", highlight=False)

    return Docs


def _with_project(project: Path | None, work: Any) -> int:
    from headwater.cli.main import _project
    from headwater.transform import DbtProject
    from headwater.warehouse import open_warehouse

    loaded = _project(project)
    warehouse = open_warehouse(loaded.root, loaded.config.warehouse, loaded.confinement)
    with warehouse.writer_lock():  # dbt writes the build database, which one process at a time may open
        return int(work(loaded, DbtProject(loaded, warehouse)))


def _run(dbt_project: Any, args: list[str]) -> int:
    from headwater.transform.passthrough import run_dbt

    return run_dbt(dbt_project, args)
