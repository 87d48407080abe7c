"""The `headwater` command: thin over the same services the web app calls."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from headwater import __version__
from headwater.cli import backup as backup_cli
from headwater.cli import check as check_cli
from headwater.cli import dbt_cmd as dbt_cli
from headwater.cli import orgs
from headwater.cli import query as query_cli
from headwater.cli import status as status_cli
from headwater.cli import sync as sync_cli
from headwater.cli import test_cmd as test_cli
from headwater.cli.console import err, out
from headwater.cli.daemon_cmd import daemon_app
from headwater.cli.helptext import ADMIN, DATA, OPERATE, PROJECT, tidy
from headwater.cli.options import ProjectOpt
from headwater.cli.secrets import secrets_app
from headwater.cli.warehouse_cmd import warehouse_app
from headwater.errors import ExitCode, HeadwaterError

if TYPE_CHECKING:  # the CLI imports the project's modules only when a command needs them
    from headwater.config.model import LoadedProject

app = typer.Typer(
    name="headwater",
    help="Sync sources into a warehouse, transform them with dbt, check, publish, and serve dashboards.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)



class ExportFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
# Every integer the command line takes has a range, so a typo is a usage error (exit 2) before
# anything runs, never an overflow deep inside (SQLite's 64-bit integers, bind()'s ports).
MAX_INT64 = 2**63 - 1
MAX_SEED = 2**31 - 1
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]


def _project(path: Path | None) -> LoadedProject:
    """The project, confined to its folder when it is an organisation's in an install (system/orgs.py)."""
    from headwater.errors import NotFound
    from headwater.system.orgs import open_project

    if path is not None and not path.is_dir():
        raise NotFound(f"--project {path}: no such folder", fix="Pass the folder that holds headwater.yml.")
    return open_project(path)


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        out.print(f"headwater {__version__}")
        raise typer.Exit()


WarehouseOpt = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        metavar="URL",
        help="Build and publish in this PostgreSQL database (postgresql://user:password@host:5432/database) or BigQuery project "
        "(bigquery://PROJECT?location=EU&dataset_prefix=acme_) instead of the embedded DuckDB warehouse. "
        "A password in it is kept as the secret WAREHOUSE_URL, never in headwater.yml.",
        show_default=False,
    ),
]


def _use_warehouse(directory: Path, url: str, block: tuple[str, bool]) -> None:
    """Point the project in ``directory`` at the warehouse of ``--warehouse URL``."""
    from headwater.cli.secrets import project_store
    from headwater.scaffold import WAREHOUSE_SECRET, set_warehouse

    text, secret = block
    if secret:
        with project_store(directory) as (store, org):
            store.set(org, WAREHOUSE_SECRET, url, actor="cli")
    set_warehouse(directory, text)


@app.command(rich_help_panel=PROJECT)
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in (created if missing).")],
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder's name).")] = None,
    dbt_project: Annotated[
        Path | None,
        typer.Option("--dbt-project", help="Use this existing dbt project (the folder holding dbt_project.yml) instead of creating one.", show_default=False),
    ] = None,
    warehouse: WarehouseOpt = None,
    from_demo: Annotated[
        bool, typer.Option("--from-demo", help="Create the full volunteer flake-rate example (`headwater demo`'s project and generated data) without running it.")
    ] = False,
    signups: Annotated[
        int | None, typer.Option(min=100, max=orgs.MAX_SIGNUPS, help="With --from-demo: sign-ups to generate in its campaign database (default 200,000).", show_default=False)
    ] = None,
) -> None:
    """Create a project that runs at once: an example CSV source, its dbt models (staging, intermediate, marts) and a dashboard."""
    import shlex

    from headwater.scaffold import init_project, warehouse_block

    _init_options(from_demo, name, dbt_project, signups)
    block = warehouse_block(warehouse) if warehouse else None  # checked before anything is created
    if from_demo:
        _init_demo(directory, signups or 200_000)
    else:
        created = init_project(directory, name, dbt_project, example=dbt_project is None)
    if warehouse and block:
        _use_warehouse(directory, warehouse, block)
    folder = escape(shlex.quote(str(directory)))  # a command to paste into a shell
    if from_demo:
        out.print(f"Next: cd {folder} && headwater run, then `headwater user add YOU@example.org --role admin` and `headwater serve`.", highlight=False, soft_wrap=True)
        return
    using = f", building the dbt project in {dbt_project}" if dbt_project else ""
    out.print(f"Created project [bold]{escape(created.name)}[/] in {escape(str(directory))}{escape(using)}", highlight=False)
    if dbt_project:
        out.print("Next: add sources to headwater.yml, list the models readers may see under a pipeline's publish: (default: the marts folder), then `headwater run`.")
    else:
        out.print("It holds an example to start from: a CSV source (data/shifts.csv), its dbt models under models/ and a dashboard (dashboards/), each file commented.", highlight=False, soft_wrap=True)
        out.print(
            f"Next: cd {folder} && headwater run, then `headwater export hours_by_region`; for the dashboard, "
            "`headwater user add YOU@example.org --role admin` and `headwater serve`.",
            highlight=False,
            soft_wrap=True,
        )


def _init_options(from_demo: bool, name: str | None, dbt_project: Path | None, signups: int | None) -> None:
    """Refuse options of `init` that do not go together, before anything is created."""
    if from_demo and (name or dbt_project):
        given = " and ".join(option for option, value in (("--name", name), ("--dbt-project", dbt_project)) if value)
        raise HeadwaterError(
            f"--from-demo cannot be used with {given}",
            why="--from-demo creates the demo project as it is (named flake_demo, with its own dbt project)",
            fix=f"Leave {given} out, or leave --from-demo out to create a project of your own.",
        )
    if signups is not None and not from_demo:
        raise HeadwaterError("--signups is for --from-demo", why="only the demo's campaign database is generated", fix="Add --from-demo, or leave --signups out.")


def _init_demo(directory: Path, signups: int) -> None:
    """`init --from-demo`: the demo project and its generated data, not run."""
    from headwater.demo import create_demo

    with err.status("Creating the demo project…", spinner="dots") as status:

        def say(message: str) -> None:
            status.update(f"Creating the demo project: {message}…")
            out.print(f"[dim]•[/] {escape(message)}", highlight=False, soft_wrap=True)

        create_demo(directory, signups=signups, say=say)
    out.print(f"Created the demo project [bold]flake_demo[/] in {escape(str(directory))}: the volunteer flake-rate report of `headwater demo`, not run yet.", highlight=False, soft_wrap=True)


@app.command(rich_help_panel=PROJECT)
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo project.")] = Path("flake-demo"),
    signups: Annotated[int, typer.Option(min=100, max=orgs.MAX_SIGNUPS, help="Sign-ups to generate in the demo's campaign database.")] = 200_000,
    seed: Annotated[int, typer.Option(min=-MAX_SEED, max=MAX_SEED, help="Random seed: the same seed gives the same data.")] = 7,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the dashboard when the run is done.")] = True,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: PortOpt = 8080,
    regenerate: Annotated[bool, typer.Option(help="Regenerate the campaign database if the demo exists already.")] = False,
    warehouse: WarehouseOpt = None,
) -> None:
    """Generate the volunteer flake-rate example, run its pipeline, and serve its dashboard."""
    from headwater.demo import prepare_demo
    from headwater.scaffold import warehouse_block

    block = warehouse_block(warehouse) if warehouse else None
    configure = (lambda folder: _use_warehouse(folder, warehouse, block)) if warehouse and block else None

    with err.status("Preparing the demo…", spinner="dots") as status:

        def say(message: str) -> None:
            status.update(f"Preparing the demo: {message}…")
            out.print(f"[dim]•[/] {message}")

        project = prepare_demo(directory, signups=signups, seed=seed, regenerate=regenerate, say=say, configure=configure)
    _run_and_report(project, None, trigger="demo", as_json=False)
    from headwater.demo import demo_admin

    email, password = demo_admin(project)
    where = f"http://{host}:{port}/login" if serve else f"/login once `headwater serve -p {directory}` runs"
    out.print(f"Log in at {where} as [bold]{email}[/] with the password [bold]{password}[/] (new each time the demo starts).", highlight=False, soft_wrap=True)
    out.print(f"Add people with: headwater user add EMAIL --role viewer -p {directory}", highlight=False, soft_wrap=True)
    if serve:
        _serve(project, host, port)
    else:
        out.print(f"Done. Export the mart with: headwater export flake_rate_weekly -p {directory} -o flake_rate_weekly.csv")


@app.command(rich_help_panel=DATA)
def run(
    pipeline: Annotated[str | None, typer.Argument(help="Pipeline to run (needed when the project has several).")] = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    select: Annotated[
        str | None,
        typer.Option("--select", "-s", help="dbt selection for this run instead of the pipeline's select: (e.g. +flake_rate_weekly). The sync stays whole; published tables not rebuilt are kept as they are.", show_default=False),
    ] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Reload every table of the pipeline's sources in full, and pass --full-refresh to dbt.")] = False,
) -> None:
    """Run a pipeline: sync -> dbt build (models and tests) -> checks -> publish. Exit code 0 only on success.

    The run gets the pipeline's timeout and retries (transient errors only), and alerts go out if it
    fails or recovers, exactly as for a scheduled run."""
    _run_and_report(_project(project), pipeline, trigger="cli", as_json=as_json, select=select, full_refresh=full_refresh)


def _run_and_report(project: Any, pipeline: str | None, *, trigger: str, as_json: bool, select: str | None = None, full_refresh: bool = False) -> None:
    from headwater.orchestrate.supervise import execute
    from headwater.services.runs import get_run, published_tables, run_json
    from headwater.system import open_system_db
    from headwater.system.audit import cli_actor

    outcome = execute(project, pipeline, trigger, show_log=not as_json, actor=cli_actor(), select=select, full_refresh=full_refresh)
    db = open_system_db(project)
    try:
        record = get_run(db, project.config.name, outcome.run_id) if outcome.run_id is not None else None
    finally:
        db.close()
    published = published_tables(record)
    if as_json:
        out.print_json(data=(run_json(record) if record else {"pipeline": outcome.pipeline, "status": outcome.status}) | {"attempts": outcome.attempts, "published": published})
    elif record is None:
        err.print(f"[bold red]Error:[/] {escape(outcome.stderr.strip() or 'the run could not start')}", highlight=False)
    elif record.status == "success":
        took = f" in {record.duration.total_seconds():.1f}s" if record.duration is not None else ""  # a success is recorded with its end
        out.print(f"[green]Run {record.id} succeeded[/]{took}: pipeline {record.pipeline}, {record.rows_synced or 0:,} rows synced.")
        for table, rows in published.items():
            out.print(f"  published [bold]{table}[/]: {rows:,} rows")
    elif record.status == "running":  # its process ended without recording how (a full disk under the system database)
        err.print(f"[bold red]Run {record.id} failed[/] (pipeline {record.pipeline}, attempt {record.attempt}), and its end could not be recorded in the system database. Published data was left as it was.", highlight=False)
        err.print(outcome.stderr.strip() or "Its error is printed above.", highlight=False)
    else:
        # A publish can commit in the warehouse and fail after (the dashboards' copy): then it did change.
        left = f"Published to the warehouse: {', '.join(published)}; the dashboards' copy catches up at the next successful run." if published else "Published data was left as it was."
        if not published and "published data was left as it was" in (record.error or "").lower():
            left = ""  # its error, printed above, says so
        err.print(f"[bold red]Run {record.id} failed[/] (pipeline {record.pipeline}, attempt {record.attempt}). {left}".rstrip(), highlight=False)
        if outcome.timed_out:  # stopped from outside: its error was recorded, not in the log above
            err.print(escape(record.error or ""), highlight=False)
        if f"headwater logs {record.id}" not in (record.error or ""):  # else its Fix, printed above, says so
            err.print(f"See the whole log: headwater logs {record.id}", highlight=False)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


@app.command(rich_help_panel=OPERATE)
def logs(
    run_id: Annotated[int, typer.Argument(min=1, max=MAX_INT64, help="The run's number, as `headwater runs` shows it.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Print a run's log: steps, dbt's output, checks, errors. With --follow, watch a live run."""
    import time

    from rich.text import Text

    from headwater.errors import NotFound
    from headwater.services.runs import LEVEL_AT, get_run, log_lines, log_text
    from headwater.system import open_system_db

    loaded = _project(project)
    db = open_system_db(loaded)
    try:
        if get_run(db, loaded.config.name, run_id) is None:
            raise NotFound(f"No run {run_id} in project {loaded.config.name}", fix="`headwater runs` lists the runs.")
        after = 0
        while True:
            for line in log_lines(db, run_id, after):
                text = Text(log_text(line))  # plain text: a message is never read as Rich markup
                if style := {"error": "red", "warn": "yellow"}.get(line.level):
                    text.stylize(style, LEVEL_AT.start, LEVEL_AT.stop)
                out.print(text, highlight=False)
                after = line.id
            record = get_run(db, loaded.config.name, run_id)
            if not follow or record.status != "running":  # type: ignore[union-attr]
                break
            time.sleep(0.5)
        out.print(f"Run {run_id}: {record.status}")  # type: ignore[union-attr]
    finally:
        db.close()


@app.command(rich_help_panel=OPERATE)
def runs(
    project: ProjectOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_INT64, help="How many of the latest runs to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs: pipeline, status, started, duration, rows."""
    from headwater.services.runs import recent_runs, run_json
    from headwater.system import open_system_db

    loaded = _project(project)
    db = open_system_db(loaded)
    try:
        rows = recent_runs(db, loaded.config.name, limit)
    finally:
        db.close()
    if as_json:
        out.print_json(data=[run_json(r) for r in rows])
        return
    table = Table("run", "pipeline", "status", "trigger", "started (UTC)", "duration", "rows", "error", box=None)
    for r in rows:
        colour = {"success": "green", "failed": "red"}.get(r.status, "yellow")
        table.add_row(
            str(r.id), r.pipeline, f"[{colour}]{r.status}[/]", r.trigger, f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            f"{r.duration.total_seconds():.1f}s" if r.duration else "-", f"{r.rows_synced:,}" if r.rows_synced is not None else "-",
            (r.error or "").splitlines()[0][:60] if r.error else "",
        )  # fmt: skip
    out.print(table if rows else "No runs yet. Start one with `headwater run`.")


@app.command(rich_help_panel=DATA)
def export(
    table: Annotated[str, typer.Argument(help="A published table, e.g. flake_rate_weekly.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="File format. XLSX: past 1,048,575 rows the rows go on in further sheets.")] = ExportFormat.csv,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write, replaced when the export is complete (a symlink: its target); - for standard output (the default for CSV).")
    ] = None,
    dashboard: Annotated[str | None, typer.Option("--dashboard", "-d", help="Apply this dashboard's filters (see --filter), as its downloads do.")] = None,
    filters: Annotated[
        list[str] | None, typer.Option("--filter", help="KEY=VALUE for one of the dashboard's filters, e.g. 'region=North Metro' or weeks_from=2024-01-06; repeat for more.")
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="CSV: write text as it is. By default a text cell starting with = + - @ (a formula to a spreadsheet) gets a leading '.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Export a published table (what dashboards show), streamed with no row cap; the same code as
    the web app's downloads."""
    import logging

    from headwater import dashboards
    from headwater.cli import output as outputs
    from headwater.cli.progress import counting_rows
    from headwater.errors import NotFound
    from headwater.publish import PublishedData
    from headwater.publish.export import (
        EXPORT_MEMORY_LIMIT,
        remove_stale_scratch,
        write,
    )
    from headwater.warehouse import open_warehouse

    loaded = _project(project)
    if fmt is ExportFormat.xlsx and output is None:
        raise HeadwaterError("XLSX needs a file to write to", fix="Add -o FILE.xlsx (or -o - for standard output).")
    if output is not None:
        outputs.target(output)  # refused before any row is read
    if fmt is ExportFormat.xlsx:
        remove_stale_scratch()  # left by an export or a server killed while writing one
    selections: dict[str, list[str]] = {}
    for item in filters or []:
        key, equals, value = item.partition("=")
        if not equals:
            raise HeadwaterError(f"--filter {item!r} is not KEY=VALUE", fix="Write e.g. --filter 'region=North Metro'.")
        if not value.strip():  # on a web page an empty field means "not filtered"; here it is a value left out (`region=$UNSET`)
            raise HeadwaterError(f"--filter {item!r} has no value", why="an empty value selects nothing, so every row would be written", fix="Give the value, or leave the --filter out to export every row.")
        selections.setdefault(key.strip(), []).append(value)
    if selections and dashboard is None:
        raise HeadwaterError("--filter needs --dashboard", why="filters are declared by a dashboard", fix=f"Add --dashboard NAME ({', '.join(loaded.config.dashboards) or 'this project has none'}).")
    board = None
    if dashboard is not None:
        board = loaded.config.dashboards.get(dashboard)
        if board is None:
            raise NotFound(f"No dashboard named '{dashboard}'", fix=f"Dashboards of this project: {', '.join(loaded.config.dashboards) or 'none yet'}.")
    quiet = logging.getLogger("headwater.warehouse")  # a fallback's note is printed below, once
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    data = PublishedData(open_warehouse(loaded.root, loaded.config.warehouse, loaded.confinement))
    try:
        with data.cursor() as cur:  # this process's own reader: no need for DuckDB to keep the blocks it read
            cur.execute(f"SET memory_limit = '{EXPORT_MEMORY_LIMIT}'")
        if data.warehouse.fallback:
            err.print(f"[yellow]Warning:[/] {data.warehouse.fallback}", highlight=False)
        query = dashboards.table_query(data, board, table, selections) if board else dashboards.Query(data.table_query(table), {})
        if board is not None:
            dashboards.refuse_ignored(board, table, query, selections)  # a file has no "unfiltered" label, as the web page has
        with dashboards.stream(data, table, query) as streamed, counting_rows(streamed, err, f"export {table}") as reader:
            rows = outputs.write_to(output, fmt.value, lambda handle: write(reader, fmt.value, handle, raw=raw), sys.stdout.buffer)
        notes = dashboards.unmatched(data, board, table, selections) if board is not None and selections else []
    finally:
        data.close()
    for note in notes:  # on standard error: never in the data
        err.print(f"[yellow]Note:[/] {note}", highlight=False)
    if output is not None and str(output) != outputs.STDOUT:
        err.print(f"Wrote {rows:,} rows of {table} to {output}")


@app.command(rich_help_panel=OPERATE)
def serve(
    project: ProjectOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: PortOpt = 8080,
    scheduler: Annotated[bool, typer.Option("--scheduler/--no-scheduler", help="Run scheduled pipelines in this process too.")] = True,
    install: Annotated[Path | None, typer.Option("--install", "-i", help="Serve every organisation of this install (each under /o/NAME/) instead of one project.", show_default=False)] = None,
    reload: Annotated[bool, typer.Option("--reload/--no-reload", help="Pick up edits of headwater.yml and dashboard files without a restart (a file that does not load keeps its last good version).")] = True,
) -> None:
    """Serve the web app (dashboards and exports of published data) and the pipelines' schedules."""
    if install is not None:
        orgs.serve_install(install, host, port, scheduler=scheduler, reload=reload)
        return
    _serve(_project(project), host, port, scheduler=scheduler, reload=reload)


@app.command(rich_help_panel=OPERATE)
def worker(project: ProjectOpt = None) -> None:
    """Run the pipelines' schedules without the web app (Ctrl+C or SIGTERM to stop)."""
    from headwater.cli.serving import executor
    from headwater.orchestrate.scheduler import run_worker
    from headwater.orchestrate.supervise import start_warm_attempts
    from headwater.system import open_system_db

    loaded = _project(project)
    db = open_system_db(loaded)
    try:
        _describe_schedules(loaded)
        start_warm_attempts([loaded.config.warehouse.type])
        run_worker(loaded, db, executor(loaded))
    finally:
        db.close()


def _describe_schedules(project: Any) -> None:
    scheduled = {n: p.schedule for n, p in project.config.pipelines.items() if p.schedule}
    for name, schedule in scheduled.items():
        out.print(f"Schedule: [bold]{name}[/] at '{schedule.cron}' ({schedule.timezone})")
    if not scheduled:
        out.print("No pipeline has a schedule: add schedule: {cron: '0 7 * * *', timezone: ...} to one in headwater.yml.")


def _serve(project: Any, host: str, port: int, *, scheduler: bool = True, reload: bool = True) -> None:
    from headwater.cli.serving import serve_web
    from headwater.system import open_system_db
    from headwater.system.orgs import DEFAULT_ORG
    from headwater.web import create_app

    db = open_system_db(project)
    try:
        serve_web(
            db,
            {DEFAULT_ORG: project} if scheduler else {},
            lambda jobs: create_app(project, scheduler=jobs.get(DEFAULT_ORG), reload=reload),
            host=host,
            port=port,
            announce=lambda _slug, scheduled: _describe_schedules(scheduled),
            banner=lambda: out.print(f"Serving [bold]{project.config.name}[/] on [link]http://{host}:{port}/[/link]  (Ctrl+C to stop)"),
            warehouses=[project.config.warehouse.type],  # its runs, scheduled or not
        )
    finally:
        db.close()


# --- accounts -------------------------------------------------------------------------------------

user_app = typer.Typer(help="Accounts of the web app: add people, set their role, reset passwords, disable.", no_args_is_help=True)
app.add_typer(user_app, name="user", rich_help_panel=ADMIN)
app.add_typer(secrets_app, name="secrets", rich_help_panel=ADMIN)
app.add_typer(daemon_app, name="daemon", rich_help_panel=OPERATE)
app.add_typer(warehouse_app, name="warehouse", rich_help_panel=ADMIN)
orgs.register(app)  # `headwater org create|list`, `headwater invite`
sync_cli.register(app)  # `headwater sync`
backup_cli.register(app)  # `headwater backup`
query_cli.register(app)  # `headwater query`, `headwater shell`
status_cli.register(app)  # `headwater status`
test_cli.register(app)  # `headwater test`
dbt_cli.register(app)  # `headwater dbt`, `headwater docs`
check_cli.register(app)  # `headwater check`

RoleArg = Annotated[str, typer.Argument(help="viewer (dashboards, exports) · analyst (also runs and logs) · admin (also sources, secrets, users).", show_default=False)]
PasswordStdinOpt = Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input instead of asking.")]


@contextmanager
def _accounts(project: Path | None, install: Path | None = None, org: str | None = None, *, need_org: bool = True) -> Iterator[tuple[Any, str]]:
    """The accounts service of the system database meant (a project's, or an install's: see
    `cli.orgs.target_db`) and the organisation meant; the database is closed after."""
    from headwater.system.accounts import Accounts

    db, slug = orgs.target_db(project, install, org, need_org=need_org)
    try:
        yield Accounts(db), slug
    finally:
        db.close()


def _operator() -> Any:
    """Who changes accounts from this command line: the server's operator, as the audit log names them."""
    from headwater.system.accounts import Actor
    from headwater.system.audit import cli_actor

    return Actor.operator(cli_actor())


def _new_password(email: str, from_stdin: bool) -> str:
    from headwater.system.accounts import check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt(f"Password for {email}", hide_input=True, confirmation_prompt=True)
    else:
        raise HeadwaterError("No terminal to ask for the password", fix="Pipe it in with --password-stdin, e.g. `printf '%s\\n' \"$PASSWORD\" | headwater user add ... --password-stdin`.")
    check_password(password, email)
    return password


OrgOpt = Annotated[str | None, typer.Option("--org", help="The organisation (default: a one-project install's own; needed in an install with several).", show_default=False)]
InstallOpt = Annotated[Path | None, typer.Option("--install", "-i", help="An install with several organisations: its folder.", show_default=False)]
AttrOpt = Annotated[list[str] | None, typer.Option("--attr", help="Row-level attribute NAME=VALUE, e.g. region=North: with a dashboard's row filter on it, they see only those rows (repeat for more).")]


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The person's e-mail address: what they log in with.", show_default=False)],
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, analyst or admin.")] = "viewer",
    password_stdin: PasswordStdinOpt = False,
    org: OrgOpt = None,
    attrs: AttrOpt = None,
    install: InstallOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Add a person to an organisation with a role; asks for a password (at least 10 characters) when
    they have no account yet (someone with an account in another organisation keeps theirs)."""
    from headwater.system.accounts import normalise_email, parse_role
    from headwater.system.orgs import DEFAULT_ORG, parse_attributes

    email, role = normalise_email(email), parse_role(role).value  # refuse a typo before asking for a password
    attributes = parse_attributes(attrs or [])
    with _accounts(project, install, org) as (accounts, slug):
        if accounts.exists(email) and slug not in accounts.organisations_of(email):
            created = accounts.add_member(email, role, org=slug, attributes=attributes, actor=_operator())
            joined = True
        else:
            accounts.check_new(email, role)  # a duplicate is refused before asking for a password
            created = accounts.create_user(email, _new_password(email, password_stdin), role, org=slug, attributes=attributes, actor=_operator())
            joined = False
    scope = "; sees only rows with " + ", ".join(f"{k} = {' or '.join(v)}" for k, v in attributes.items()) if attributes else ""
    how = "with the password they already have" if joined else "at /login of `headwater serve`"
    where = "" if slug == DEFAULT_ORG else f" in {slug}"
    out.print(f"Added [bold]{created.email}[/] as {created.role}{where}{scope}. They can log in {how}.", highlight=False)


@user_app.command("list")
def user_list(org: OrgOpt = None, install: InstallOpt = None, project: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """The members of an organisation: role, row-level attributes, when they last logged in."""
    with _accounts(project, install, org) as (accounts, slug):
        users = accounts.list_users(org=slug)
    if as_json:
        out.print_json(
            data=[
                {
                    "email": u.email, "role": u.role, "attributes": {k: list(v) for k, v in u.attributes.items()}, "disabled": u.disabled,
                    "created_at": u.created_at.isoformat(), "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
                }
                for u in users
            ]
        )
        return
    table = Table("email", "role", "rows", "status", "last login (UTC)", box=None)
    for u in users:
        rows = "; ".join(f"{k} = {', '.join(v)}" for k, v in u.attributes.items()) or "all"
        table.add_row(u.email, str(u.role or "-"), rows, "[red]disabled[/]" if u.disabled else "active", f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never")
    out.print(table if users else "No accounts yet. Add one with `headwater user add EMAIL --role admin`.")


@user_app.command("set-role")
def user_set_role(
    email: Annotated[str, typer.Argument(show_default=False)], role: RoleArg, org: OrgOpt = None, attrs: AttrOpt = None, install: InstallOpt = None, project: ProjectOpt = None
) -> None:
    """Change a person's role in an organisation (and, with --attr, the rows they see there)."""
    from headwater.system.orgs import DEFAULT_ORG, parse_attributes

    attributes = parse_attributes(attrs) if attrs is not None else None
    with _accounts(project, install, org) as (accounts, slug):
        changed = accounts.set_role(email, role, org=slug, attributes=attributes, actor=_operator())
    out.print(f"{changed.email} is now {changed.role}{'' if slug == DEFAULT_ORG else f' in {slug}'}.", highlight=False)


@user_app.command("set-password")
def user_set_password(email: Annotated[str, typer.Argument(show_default=False)], password_stdin: PasswordStdinOpt = False, install: InstallOpt = None, project: ProjectOpt = None) -> None:
    """Set a new password; every session of the account ends (logged out everywhere)."""
    with _accounts(project, install, need_org=False) as (accounts, _slug):
        found = accounts.get(email)
        accounts.set_password(found.email, _new_password(found.email, password_stdin), actor=_operator())
    out.print(f"New password set for {found.email}; its sessions were ended.", highlight=False)


@user_app.command("disable")
def user_disable(email: Annotated[str, typer.Argument(show_default=False)], install: InstallOpt = None, project: ProjectOpt = None) -> None:
    """Stop an account from logging in (to every organisation), and end its sessions now."""
    with _accounts(project, install, need_org=False) as (accounts, _slug):
        changed = accounts.set_disabled(email, True, actor=_operator())
    out.print(f"{changed.email} is disabled and logged out everywhere.", highlight=False)


@user_app.command("enable")
def user_enable(email: Annotated[str, typer.Argument(show_default=False)], install: InstallOpt = None, project: ProjectOpt = None) -> None:
    """Let a disabled account log in again."""
    with _accounts(project, install, need_org=False) as (accounts, _slug):
        changed = accounts.set_disabled(email, False, actor=_operator())
    out.print(f"{changed.email} can log in again.", highlight=False)


def _fail(exc: HeadwaterError) -> None:
    err.print(f"[bold red]Error:[/] {escape(exc.render())}", highlight=False)
    sys.exit(int(exc.exit_code))


def main() -> None:
    """Entry point: one funnel turns user errors into a message and an exit code, never a traceback.

    Typer runs in standalone mode, so usage errors (unknown option, missing argument) print their own
    message and exit 2, and Ctrl+C aborts cleanly."""
    from headwater.cli.console import install_logging as print_logging
    from headwater.redact import install_logging

    install_logging()
    print_logging()
    try:
        tidy(typer.main.get_command(app))(prog_name="headwater")
    except HeadwaterError as exc:
        _fail(exc)
    except Exception as exc:  # noqa: BLE001 - the funnel's last resort: a bug, shown as one
        from headwater.system.db import explain

        if (explained := explain(exc)) is not None:  # the system database made read-only or damaged meanwhile
            _fail(explained)
        err.print_exception(show_locals=False)
        err.print("[bold red]This is a bug in Headwater[/], not something you did. Please report it with the traceback above.")
        sys.exit(int(ExitCode.INTERNAL))
    finally:
        # The process is about to end: the garbage collector's passes at interpreter shutdown would
        # walk every object the imports made (SQLAlchemy, pydantic, DuckDB: ~0.09 s of a `headwater
        # sync`) only to free memory the OS takes back anyway. Connections and files are closed by the
        # code that opened them, not left to the collector.
        gc.freeze()


if __name__ == "__main__":
    main()
