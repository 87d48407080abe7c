"""Dashboard mistakes caught before viewers see them (issue #20): the run's dashboards check, a
dashboard file that does not load, and `headwater check`. Through the real CLI, on the demo."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cli_process import cli_env, run_cli
from demo_project import make_project

from headwater.config import LoadedProject
from headwater.warehouse import open_warehouse

SIGNUPS = 300
DASHBOARD = Path("dashboards") / "flake_rate.yml"


def cli(*args: str | Path, cwd: Path) -> object:
    return run_cli(*args, cwd=cwd, env=cli_env(COLUMNS="200"))


def published(project: LoadedProject) -> str | None:
    snapshot = open_warehouse(project.root, project.config.warehouse).current_snapshot()
    return snapshot.name if snapshot else None


def edit(project: LoadedProject, old: str, new: str, path: Path = DASHBOARD) -> None:
    file = project.root / path
    text = file.read_text()
    assert old in text, f"{old!r} not in {path}"
    file.write_text(text.replace(old, new, 1))


def checks_of(project: LoadedProject, run_id: int) -> list[dict]:
    with sqlite3.connect(project.root / ".headwater" / "system.db") as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM check_results WHERE run_id = ? AND kind = 'dashboard'", (run_id,))]


@pytest.fixture(scope="module", name="ran")
def ran_fixture(tmp_path_factory: pytest.TempPathFactory) -> LoadedProject:
    """The demo, run once (its dashboard fits its tables)."""
    project = make_project(tmp_path_factory.mktemp("dashcheck") / "demo", SIGNUPS)
    done = cli("run", "--json", cwd=project.root)
    assert done.returncode == 0, done.stderr
    return project


def test_a_chart_naming_a_missing_column_fails_the_run_before_publishing(ran: LoadedProject) -> None:
    before = published(ran)
    edit(ran, "      completed: sum(completed)\n      flaked", "      completed: sum(completd)\n      flaked")
    edit(ran, "series: region", "series: regoin")
    try:
        done = cli("run", cwd=ran.root)
        assert done.returncode == 1, done.stdout + done.stderr
        text = done.stdout + done.stderr
        # the file, the chart, the column and the table's columns, each problem said
        assert "dashboards/flake_rate.yml: chart 1 ('Flake rate by week and region')" in text
        assert "uses column 'regoin', which table 'flake_rate_weekly' does not have" in text
        assert "Columns of flake_rate_weekly: cancelled, completed, flake_rate" in text
        assert "chart 2 ('Completed vs flaked')" in text and '"completd"' in text
        assert published(ran) == before  # the previous publication is kept
        runs = json.loads(cli("runs", "--json", "--limit", "1", cwd=ran.root).stdout)
        assert runs[0]["status"] == "failed"
        [result] = checks_of(ran, runs[0]["id"])
        assert (result["name"], result["status"], result["severity"]) == ("dashboards/flake_rate.yml", "fail", "error")
        assert "regoin" in result["message"] and "completd" in result["message"]
        logs = cli("logs", str(runs[0]["id"]), cwd=ran.root)
        assert logs.returncode == 0 and "regoin" in logs.stdout
    finally:
        edit(ran, "sum(completd)", "sum(completed)")
        edit(ran, "series: regoin", "series: region")
