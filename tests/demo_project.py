"""Build demo projects in temporary folders for the pipeline tests."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import duckdb

from headwater.config import LoadedProject, load_project
from headwater.demo import TEMPLATE, demo_timezone
from headwater.demo.generate import generate_campaign_db
from headwater.scaffold import copy_template
from headwater.warehouse import open_warehouse

AS_OF = dt.date(2026, 11, 18)  # a Wednesday: the current week runs Saturday 2026-11-14 to today


def make_project(root: Path, signups: int, *, timezone: str | None = None, today: dt.date = AS_OF, seed: int = 7) -> LoadedProject:
    """The demo project with a generated campaign database, its report pinned to ``today``."""
    timezone = timezone or demo_timezone()
    copy_template(TEMPLATE, root, {})
    generate_campaign_db(root / "data" / "campaign.db", signups, seed=seed, today=today, timezone=timezone)
    with open(root / "headwater.yml", "a") as handle:
        handle.write(f"dbt:\n  vars:\n    campaign_timezone: {timezone}\n    as_of_date: '{today.isoformat()}'\n")
    return load_project(root)


def campaign_db(project: LoadedProject) -> Path:
    return project.root / "data" / "campaign.db"


def execute_source(project: LoadedProject, sql: str, params: tuple = ()) -> None:
    with sqlite3.connect(campaign_db(project)) as con:
        con.execute(sql, params)


def published_rows(project: LoadedProject, table: str = "flake_rate_weekly") -> dict[tuple, dict]:
    """The published mart keyed by (week_start, region, organizer)."""
    snapshot = open_warehouse(project.root, project.config.warehouse).current_snapshot()  # either engine's local copy
    assert snapshot is not None, "nothing published"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        cursor = con.execute(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        return {(r[0], r[1], r[2]): dict(zip(names[3:], r[3:], strict=True)) for r in cursor.fetchall()}


def assert_matches_reference(got: dict[tuple, dict], expected: dict[tuple, dict]) -> None:
    assert set(got) == set(expected), f"keys differ: only in mart {sorted(set(got) - set(expected))[:3]}, only in reference {sorted(set(expected) - set(got))[:3]}"
    for key, want in expected.items():
        have = got[key]
        for column, value in want.items():
            if column == "flake_rate" and value is not None:
                assert abs(have[column] - value) < 1e-12, (key, column, have[column], value)
            else:
                assert have[column] == value, (key, column, have[column], value)


def recent_runs_of(project: LoadedProject, limit: int = 50) -> list:
    """The project's latest runs, newest first, from its system database."""
    from headwater.services.runs import recent_runs
    from headwater.system import open_system_db

    db = open_system_db(project)
    try:
        return recent_runs(db, project.config.name, limit)
    finally:
        db.close()
