"""The worked example: a campaign's volunteer database and the flake-rate report built from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from headwater.config import LoadedProject
from headwater.config.loader import PROJECT_FILE
from headwater.scaffold import copy_template

TEMPLATE = Path(__file__).parent / "project"
CAMPAIGN_DB = Path("data/campaign.db")
DEMO_ADMIN = "admin@example.org"


def demo_timezone() -> str:
    """The campaign's time zone, read from the template's dbt vars: one source of truth."""
    zone: str = yaml.safe_load((TEMPLATE / "dbt_project.yml").read_text())["vars"]["campaign_timezone"]
    return zone


def prepare_demo(
    directory: Path,
    *,
    signups: int,
    seed: int = 7,
    regenerate: bool = False,
    say: Callable[[str], None] = lambda _: None,
    configure: Callable[[Path], None] | None = None,
) -> LoadedProject:
    """Create the demo project (or reuse it) and make sure its campaign database exists.
    ``configure``: changes the project folder before it is loaded (`demo --warehouse`)."""
    if (directory / PROJECT_FILE).exists():
        say(f"Using the existing demo project in {directory}")
    else:
        copy_template(TEMPLATE, directory, {})
        say(f"Created the demo project in {directory}")
    if regenerate or not (directory / CAMPAIGN_DB).exists():
        _generate(directory, signups, seed, say)
    if configure is not None:
        configure(directory)
    from headwater.system.orgs import open_project  # with the secrets store: `--warehouse` may have put the URL there

    return open_project(directory)


def create_demo(directory: Path, *, signups: int, seed: int = 7, say: Callable[[str], None] = lambda _: None) -> None:
    """The demo project in ``directory`` (new, or empty) with its generated data, not run
    (`headwater init --from-demo`)."""
    copy_template(TEMPLATE, directory, {})  # refuses a folder holding a project or other files
    _generate(directory, signups, seed, say)


def _generate(directory: Path, signups: int, seed: int, say: Callable[[str], None]) -> None:
    """The campaign database and, next to it, the organizers' sheet."""
    from headwater.demo.generate import generate_campaign_db

    database = directory / CAMPAIGN_DB
    say(f"Generating {signups:,} volunteer sign-ups into {database}")
    counts = generate_campaign_db(database, signups, seed=seed, timezone=demo_timezone(), progress=lambda phase: say(f"writing {phase}"))
    say("Campaign database: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))


def demo_admin(project: LoadedProject) -> tuple[str, str]:
    """The demo's admin account with a new random password (created if missing), as (e-mail, password).

    A new password each time the demo starts: it is printed, never stored, and nobody has to
    remember the one from last time."""
    import secrets

    from headwater.system import open_system_db
    from headwater.system.accounts import Accounts, Role

    password = secrets.token_urlsafe(12)
    db = open_system_db(project)
    try:
        accounts = Accounts(db)
        if any(account.email == DEMO_ADMIN for account in accounts.list_users()):
            accounts.set_password(DEMO_ADMIN, password)
            accounts.set_role(DEMO_ADMIN, Role.admin)
            accounts.set_disabled(DEMO_ADMIN, False)
        else:
            accounts.create_user(DEMO_ADMIN, password, Role.admin)
    finally:
        db.close()
    return DEMO_ADMIN, password
