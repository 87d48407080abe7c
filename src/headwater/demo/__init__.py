"""The worked example: a campaign's volunteer database and the flake-rate report built from it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from headwater.config import LoadedProject, load_project
from headwater.config.loader import PROJECT_FILE
from headwater.scaffold import copy_template

TEMPLATE = Path(__file__).parent / "project"
CAMPAIGN_DB = Path("data/campaign.db")


def demo_timezone() -> str:
    """The campaign's time zone, read from the template's dbt vars: one source of truth."""
    return yaml.safe_load((TEMPLATE / "dbt_project.yml").read_text())["vars"]["campaign_timezone"]


def prepare_demo(directory: Path, *, signups: int, seed: int = 7, regenerate: bool = False, say: Callable[[str], None] = lambda _: None) -> LoadedProject:
    """Create the demo project (or reuse it) and make sure its campaign database exists."""
    from headwater.demo.generate import generate_campaign_db

    if (directory / PROJECT_FILE).exists():
        say(f"Using the existing demo project in {directory}")
    else:
        copy_template(TEMPLATE, directory, {})
        say(f"Created the demo project in {directory}")
    database = directory / CAMPAIGN_DB
    if regenerate or not database.exists():
        say(f"Generating {signups:,} volunteer sign-ups into {database}")
        counts = generate_campaign_db(database, signups, seed=seed, timezone=demo_timezone(), progress=lambda phase: say(f"writing {phase}"))
        say("Campaign database: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    return load_project(directory)
