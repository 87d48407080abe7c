"""`headwater org create|list` and `headwater invite`: organisations of an install, and invitation links.

An install is a folder with ``headwater-install.yml`` (see system/orgs.py); `org create NAME
--install DIR` creates it on first use. Each organisation gets its own project folder (by default
``DIR/orgs/NAME``), scaffolded when it does not exist yet (an empty project, or the demo with
``--demo``), and pointed at the install's system database.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from headwater.cli.console import out
from headwater.cli.helptext import ADMIN
from headwater.errors import HeadwaterError

org_app = typer.Typer(help="Organisations of an install: each with its own project, warehouse, people and runs.", no_args_is_help=True)

MAX_SIGNUPS = 100_000_000  # the demo generator's largest campaign (the command line refuses more: exit 2)
InstallOpt = Annotated[
    Path | None,
    typer.Option("--install", "-i", help="The install's folder (default: $HEADWATER_INSTALL, or found from the current folder upwards).", show_default=False),
]
ProjectOpt = Annotated[Path | None, typer.Option("--project", "-p", help="A one-project install: the project's folder.", show_default=False)]
AttrOpt = Annotated[list[str] | None, typer.Option("--attr", help="Row-level attribute NAME=VALUE, e.g. region=North (repeat for more values or names).")]


def register(app: typer.Typer) -> None:
    """Add `org` and `invite` to the `headwater` command."""
    app.add_typer(org_app, name="org", rich_help_panel=ADMIN)
    app.command("invite", rich_help_panel=ADMIN)(invite)


def load_install(path: Path | None, *, create: bool = False) -> Any:  # Install, imported late to keep --help fast
    from headwater.system.orgs import Install

    if path is not None:
        return Install.create(path) if create else Install.load(path)
    return Install.load(Install.find())


def target_db(project: Path | None, install: Path | None, org: str | None, *, need_org: bool = True) -> tuple[Any, str]:
    """The system database the accounts commands work on, and the organisation meant.

    ``--install``: the install's (``--org`` needed, unless ``need_org`` is False: commands about
    whole accounts). Otherwise the project found as every command finds it (its organisation:
    the one it is the project of, else ``default``, unless ``--org`` says otherwise); failing
    that, the install found from here."""
    from headwater.config.loader import project_system_url
    from headwater.errors import NotFound
    from headwater.system import SystemDB, resolve_url
    from headwater.system.orgs import org_of_folder

    if install is None:
        if project is not None and not project.is_dir():
            raise NotFound(f"--project {project}: no such folder", fix="Pass the folder that holds headwater.yml.")
        try:  # read lightly: the project's ${secret:...} need not resolve to manage accounts
            root, url = project_system_url(project)
        except NotFound:
            if project is not None:
                raise
        else:
            db = SystemDB(resolve_url(url, root))
            return db, org or org_of_folder(db, root)  # an organisation's own project (in an install) means that organisation
    chosen = load_install(install)
    if org is None and need_org:
        raise HeadwaterError("Which organisation? This is an install with several", fix="Add --org NAME (`headwater org list` shows them).")
    return chosen.open_db(), org or ""


@org_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The organisation's name in URLs (/o/NAME/): lower-case letters, digits, hyphens.", show_default=False)],
    install: InstallOpt = None,
    project: Annotated[Path | None, typer.Option("--project", "-p", help="Its project folder: an existing project, or where to create one (default: INSTALL/orgs/NAME).")] = None,
    title: Annotated[str | None, typer.Option(help="Its name as people read it (default: NAME).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Create the project as a copy of the flake-rate demo, with generated data.")] = False,
    signups: Annotated[int, typer.Option(min=100, max=MAX_SIGNUPS, help="With --demo: sign-ups to generate.")] = 20_000,
) -> None:
    """Create an organisation (and the install, the first time) with a project of its own."""
    from headwater.config import PROJECT_FILE
    from headwater.system import audit
    from headwater.system.orgs import ORGS_DIR, Organisations, check_slug

    slug = check_slug(name)
    chosen = load_install(install, create=install is not None)
    folder = (project or chosen.root / ORGS_DIR / slug).resolve()
    db = chosen.open_db()
    try:
        organisations = Organisations(db)
        if organisations.find(slug) is not None:
            raise HeadwaterError(f"There is already an organisation named '{slug}'", fix="`headwater org list` shows them; pick another name.")
        if (folder / PROJECT_FILE).is_file():
            created_project = False
            chosen.check_folder(slug, folder)  # an existing project must already belong here
        else:
            _scaffold(chosen, slug, folder, demo=demo, signups=signups)
            created_project = True
        org = organisations.create(slug, name=title, project_path=str(folder), created_by=audit.cli_actor())
        audit.record(db, org=org.slug, actor=audit.cli_actor(), action="org_created", target=org.slug, detail={"project": str(folder)})
    finally:
        db.close()
    what = "a new project" if created_project else "its existing project"
    out.print(f"Created organisation [bold]{org.slug}[/] with {what} in {folder}", highlight=False)
    flag = f"--install {chosen.root}"
    out.print(f"Next: headwater user add EMAIL --org {org.slug} --role admin {flag}   ·   headwater run -p {folder}   ·   headwater serve {flag}", highlight=False, soft_wrap=True)


def _scaffold(install: Any, slug: str, folder: Path, *, demo: bool, signups: int) -> None:
    """A new project for the organisation: named after it, its runs in the install's database."""
    from headwater.config import PROJECT_FILE
    from headwater.system.orgs import project_name

    if demo:
        from headwater.demo import prepare_demo

        prepare_demo(folder, signups=signups)
    else:
        from headwater.scaffold import init_project

        init_project(folder, project_name(slug), example=True)  # runs at once, as `headwater init` does
    file = folder / PROJECT_FILE
    file.write_text(point_at_install(file.read_text(), project_name(slug), install.project_system_url()))


def point_at_install(text: str, name: str, system_url: str) -> str:
    """A scaffolded headwater.yml with its ``name:`` and ``system.url`` set (JSON strings are YAML)."""
    text, named = re.subn(r"(?m)^name:.*$", f"name: {name}", text, count=1)
    if not named:
        text = f"name: {name}\n" + text
    url = json.dumps(system_url)
    text, pointed = re.subn(r"(?m)^(system:[ \t]*\n[ \t]+url:)[^\n]*$", lambda m: f"{m.group(1)} {url}", text, count=1)
    if not pointed:
        if re.search(r"(?m)^system:", text):
            raise HeadwaterError("The project template's system: setting has an unexpected shape", fix="Set system.url by hand.")
        text = text.rstrip("\n") + f"\nsystem:\n  url: {url}\n"
    return text


@org_app.command("list")
def list_(install: InstallOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")] = False) -> None:
    """The install's organisations: name, title, project folder, members."""
    from headwater.system.orgs import Organisations

    chosen = load_install(install)
    db = chosen.open_db()
    try:
        orgs = Organisations(db).list()
    finally:
        db.close()
    if as_json:
        out.print_json(data=[{"name": o.slug, "title": o.name, "project": str(chosen.project_dir(o)) if o.project_path else None, "members": o.members, "created_at": o.created_at.isoformat()} for o in orgs])
        return
    table = Table("name", "title", "project", "members", "created (UTC)", box=None)
    for o in orgs:
        table.add_row(o.slug, o.name, str(chosen.project_dir(o)) if o.project_path else "-", str(o.members), f"{o.created_at:%Y-%m-%d %H:%M}")
    out.print(table)


def invite(
    email: Annotated[str, typer.Argument(help="Who is invited: only this address can use the link.", show_default=False)],
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, analyst or admin.")] = "viewer",
    org: Annotated[str | None, typer.Option("--org", help="The organisation to join (default: a one-project install's own).")] = None,
    attrs: AttrOpt = None,
    days: Annotated[int, typer.Option(min=1, max=90, help="Days the link works.")] = 7,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Where people open the web app (default: web.base_url, else a path).")] = None,
    install: InstallOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Print a one-time link that lets EMAIL join an organisation with a role (they choose their password)."""
    import datetime as dt

    from headwater.system import audit
    from headwater.system.accounts import Accounts, Actor
    from headwater.system.orgs import parse_attributes

    attributes = parse_attributes(attrs or [])
    db, slug = target_db(project, install, org)
    try:
        accounts = Accounts(db)
        token = accounts.invite(email, role, org=slug, attributes=attributes, ttl=dt.timedelta(days=days), actor=Actor.operator(audit.cli_actor()))
        invited = accounts.invitation(token)
    finally:
        db.close()
    base = (base_url or _base_url(project) or "").rstrip("/")
    out.print(f"Invitation for {invited.email} to join {slug} as {invited.role}; it works once, until {invited.expires_at:%Y-%m-%d %H:%M} UTC:", highlight=False)
    out.print(f"{base}/invite/{token}", highlight=False, soft_wrap=True)


def _base_url(project: Path | None) -> str | None:
    try:
        from headwater.system.orgs import load_with_secrets

        return load_with_secrets(project).config.web.base_url
    except HeadwaterError:
        return None


def serve_install(path: Path, host: str, port: int, *, scheduler: bool = True, reload: bool = True) -> None:
    """`headwater serve --install DIR`: every organisation of the install, each under /o/NAME/, and
    (with ``scheduler``) each organisation's scheduled pipelines."""
    from headwater.cli.serving import serve_web
    from headwater.system.orgs import Organisations
    from headwater.web import create_app

    chosen = load_install(path)
    db = chosen.open_db()
    try:
        projects = {org.slug: chosen.load_project(org) for org in (Organisations(db).list() if scheduler else []) if org.project_path is not None}
        serve_web(
            db,
            projects,
            lambda jobs: create_app(chosen, schedulers=jobs, reload=reload),
            host=host,
            port=port,
            announce=_announce_schedules,
            banner=lambda: out.print(f"Serving the install in {chosen.root} on [link]http://{host}:{port}/[/link]  (Ctrl+C to stop)"),
        )
    finally:
        db.close()


def _announce_schedules(slug: str, project: Any) -> None:
    out.print(f"Schedules of [bold]{slug}[/]: " + ", ".join(f"{n} at '{p.schedule.cron}' ({p.schedule.timezone})" for n, p in project.config.pipelines.items() if p.schedule), highlight=False)
