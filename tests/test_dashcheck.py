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
MART = Path("models") / "marts" / "flake_rate_weekly.sql"


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


TYPO = "title: Typo\ntable: flake_rate_weekly\nchrts: []\n"


@pytest.fixture(scope="module", name="ran")
def ran_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo with a second dashboard file that does not load: checked before anything is
    published, then run once; the file is removed after the run."""
    project = make_project(tmp_path_factory.mktemp("dashcheck") / "demo", SIGNUPS)
    typo = project.root / "dashboards" / "typo.yml"
    typo.write_text(TYPO)
    edit(project, "    x: week_start\n    measures:\n      completed:", "    x: week_start\n    series: no_show\n    measures:\n      completed:")  # a column the mart has, undocumented
    before = cli("check", "--json", cwd=project.root)
    done = cli("run", "--json", cwd=project.root)
    runs = cli("runs", cwd=project.root)
    logs = cli("logs", str(json.loads(done.stdout)["id"]), cwd=project.root) if done.returncode == 0 else None
    typo.unlink()
    return {"project": project, "check": before, "run": done, "runs": runs, "logs": logs}


def test_before_the_first_run_check_reads_the_dashboards_against_dbts_models(ran: dict) -> None:
    done = ran["check"]
    assert done.returncode == 2, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    [problem] = [p for p in report["problems"] if p["severity"] == "error"]  # the typo, reported once
    assert problem["area"] == "dashboards" and problem["where"] == "dashboards/typo.yml"
    assert "unknown key 'chrts' — did you mean 'charts'?" in problem["message"]
    [warning] = [p for p in report["problems"] if p["severity"] == "warn"]  # the mart's YAML does not list no_show: not known to be wrong
    assert "chart 2 ('Completed vs flaked'): uses column 'no_show', which model 'flake_rate_weekly' does not document" in warning["message"]
    areas = {a["name"]: a for a in report["checked"]}
    assert "against dbt's models" in areas["dashboards"]["detail"] and areas["dashboards"]["status"] == "problems"
    assert areas["dbt"]["status"] == "ok" and areas["source campaign"]["status"] == "ok" and areas["source roster"]["status"] == "ok"
    assert "7 table(s)" in areas["source campaign"]["detail"]


def test_a_dashboard_file_that_does_not_load_does_not_stop_the_run(ran: dict) -> None:
    project, done = ran["project"], ran["run"]
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "success" and run["published"]["flake_rate_weekly"] > 0
    results = {r["name"]: r for r in checks_of(project, run["id"])}
    assert (results["dashboards/flake_rate.yml"]["status"], results["dashboards/typo.yml"]["status"]) == ("pass", "warn")
    assert "chrts" in results["dashboards/typo.yml"]["message"]
    runs, logs = ran["runs"], ran["logs"]  # with the broken file in place
    assert runs.returncode == 0 and logs.returncode == 0, runs.stderr + logs.stderr
    assert "flake_rate" in runs.stdout and "success" in runs.stdout
    assert logs.stdout.count("dashboard dashboards/typo.yml: the file:") == 1


def test_a_chart_naming_a_missing_column_fails_the_run_before_publishing(ran: dict) -> None:
    ran = ran["project"]
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


def test_check_names_each_problem_once_and_exits_2(ran: dict) -> None:
    project = ran["project"]
    edit(project, "series: region", "series: regoin")
    edit(project, "from {{ ref('int_signups_weekly') }}", "from {{ ref('int_signups_weekli') }}", MART)
    (project.root / "data" / "campaign.db").rename(project.root / "data" / "moved.db")
    try:
        done = cli("check", cwd=project.root)
    finally:
        (project.root / "data" / "moved.db").rename(project.root / "data" / "campaign.db")
        edit(project, "int_signups_weekli", "int_signups_weekly", MART)
        edit(project, "series: regoin", "series: region")
    assert done.returncode == 2, done.stdout + done.stderr
    text = done.stdout
    assert "3 problem(s) found." in text
    assert text.count("uses column 'regoin'") == 1
    assert "dashboards/flake_rate.yml: chart 1 ('Flake rate by week and region')" in text and "Fix: Columns of flake_rate_weekly: cancelled, completed" in text
    assert text.count("int_signups_weekli") == 1 and "dbt parse failed" in text
    assert text.count("campaign.db does not exist") == 1
    assert done.stderr == ""


def test_check_of_a_clean_project_exits_0(ran: dict) -> None:
    project = ran["project"]
    done = cli("check", "flake_rate", "--json", cwd=project.root)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["problems"] == []
    areas = {a["name"]: a for a in report["checked"]}
    assert set(areas) == {"project file", "pipeline", "dbt", "dashboards", "source campaign", "source roster"}
    assert all(a["status"] == "ok" for a in areas.values())
    assert areas["dashboards"]["detail"] == "1 against the published tables"


def test_check_of_a_project_file_that_does_not_load(ran: dict) -> None:
    project = ran["project"]
    original = (project.root / "headwater.yml").read_text()
    (project.root / "headwater.yml").write_text(original.replace("pipelines:", "pipelnes:"))
    try:
        done = cli("check", cwd=project.root)
    finally:
        (project.root / "headwater.yml").write_text(original)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.count("unknown key 'pipelnes' — did you mean 'pipelines'?") == 1
    assert "skipped dbt: the project file must load first" in done.stdout
    wrong = cli("check", "nightly", cwd=project.root)
    assert wrong.returncode == 2 and wrong.stdout.count("No pipeline named 'nightly'") == 1
