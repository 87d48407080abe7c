"""The operations pages, in-process: sources, pipelines and "run now", a run's live log, users admin."""

from __future__ import annotations

import datetime as dt
import html as html_module
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest_web import (  # noqa: F401
    PASSWORD,
    account,
    client_fixture,
    empty_project_fixture,
    html_table,
    log_in,
    logged_in_client,
    project_fixture,
)
from demo_project import make_project as make_demo_project
from fastapi.testclient import TestClient
from sqlalchemy import select

from headwater.config import LoadedProject, load_project
from headwater.orchestrate.scheduler import Scheduler, fire_times
from headwater.services.describe import describe_cron, redacted_settings
from headwater.system import CheckResult, Run, RunLog, RunStep, open_system_db
from headwater.system.accounts import Accounts
from headwater.web import create_app
from headwater.web.launcher import Launcher
from headwater.web.ops import LOG_PAGE, redact

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 6, 9, 0, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------------


def add_run(project: LoadedProject, *, status: str = "success", pipeline: str = "flake_rate", trigger: str = "cli", started: dt.datetime = T0, seconds: float = 5,
            steps: list[dict[str, Any]] = (), checks: list[dict[str, Any]] = (), logs: int = 0, project_name: str | None = None, error: str | None = None) -> int:  # fmt: skip
    """A run with its steps, check results and ``logs`` log lines, written straight into the system DB."""
    db = open_system_db(project)
    try:
        with db.session() as session:
            finished = None if status == "running" else started + dt.timedelta(seconds=seconds)
            run = Run(
                project=project_name or project.config.name, pipeline=pipeline, status=status, trigger=trigger, started_at=started, finished_at=finished, error=error
            )
            session.add(run)
            session.flush()
            for position, step in enumerate(steps, 1):
                detail = step.get("detail")
                session.add(
                    RunStep(
                        run_id=run.id, position=position, name=step["name"], status=step.get("status", "success"), started_at=started,
                        finished_at=started + dt.timedelta(seconds=step.get("seconds", 1)), rows=step.get("rows"),
                        detail=json.dumps(detail) if detail is not None else None, error=step.get("error"),
                    )
                )  # fmt: skip
            for check in checks:
                session.add(CheckResult(run_id=run.id, severity="error", **check))
            for n in range(logs):
                session.add(RunLog(run_id=run.id, at=started + dt.timedelta(seconds=n), level="info", message=f"line {n + 1}"))
            session.commit()
            return run.id
    finally:
        db.close()


def sync_step(tables: dict[str, int], *, status: str = "success", quarantined: dict[str, int] | None = None, source: str = "campaign") -> dict[str, Any]:
    detail = []
    for table, rows in tables.items():
        stats: dict[str, Any] = {"table": table, "rows": rows, "seconds": 0.25, "mode": "full"}
        if quarantined and table in quarantined:
            stats["quarantined"] = quarantined[table]
        detail.append(stats)
    if status != "success":
        return {"name": f"sync:{source}", "status": status, "error": "sqlite: unable to open database file\nWhy: gone"}
    return {"name": f"sync:{source}", "rows": sum(tables.values()), "detail": detail}


def csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/no-such-page").text)
    assert match
    return match.group(1)


def text_of(html: str) -> str:
    """The page's visible text, whitespace collapsed (good enough for assertions)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.DOTALL)
    return html_module.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace(" .", ".").strip())


@pytest.fixture(name="analyst")
def analyst_fixture(project: LoadedProject) -> Iterator[TestClient]:
    with logged_in_client(project, "analyst") as client:
        yield client


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://ana:s3cret@db.example.org/prod", "postgresql://ana:***@db.example.org/prod"),
        ("postgresql+psycopg://ana:p%40ss@db:5432/prod?sslmode=require", "postgresql+psycopg://ana:***@db:5432/prod?sslmode=require"),
        ("mysql://root:pa@ss/word@10.0.0.1/shop", "mysql://root:***@10.0.0.1/shop"),  # an unencoded @ and / in the password
        ("postgresql://:onlypassword@db/prod", "postgresql://:***@db/prod"),
        ("postgresql://ana@db.example.org/prod", "postgresql://ana@db.example.org/prod"),  # no password: nothing to hide
        ("https://example.org/path:with@at", "https://example.org/path:with@at"),
        ("host=db user=ana password=s3cret dbname=prod", "host=db user=ana password=*** dbname=prod"),
        ("https://api.example.org/v1?token=abc123&x=1", "https://api.example.org/v1?token=***&x=1"),
        ("https://hooks.slack.com/x?api_key=abc", "https://hooks.slack.com/x?api_key=***"),
        ("data/campaign.db", "data/campaign.db"),
    ],
)
def test_redact_hides_passwords_in_urls_and_settings(given: str, shown: str) -> None:
    assert redact(given) == shown
    assert redact(redact(given)) == shown


def test_settings_named_like_secrets_are_hidden_whatever_their_value() -> None:
    settings = {
        "url": "postgresql://ana:s3cret@db/prod",
        "password": "hunter2hunter2",
        "options": {"api_key": "k", "schema": "public", "private_key_pem": "-----BEGIN"},
        "port": 5432,
        "none": None,
    }
    assert redacted_settings(settings) == [
        ("url", "postgresql://ana:***@db/prod"), ("password", "***"), ("options.api_key", "***"), ("options.schema", "public"), ("options.private_key_pem", "***"), ("port", "5432"),
    ]  # fmt: skip


def test_a_password_in_a_source_setting_never_reaches_a_page(tmp_path: Path) -> None:
    root = tmp_path / "secret"
    root.mkdir()
    (root / "headwater.yml").write_text(
        "name: secretive\n"
        "sources:\n"
        "  crm:\n"
        "    type: sqlite\n"
        "    path: 'postgresql://ana:Sup3rS3cret@db.example.org/crm?password=Sup3rS3cret'\n"
        "pipelines:\n"
        "  nightly:\n"
        "    sources: [crm]\n"
    )
    project = load_project(root)
    add_run(project, pipeline="nightly", steps=[sync_step({"contacts": 3}, source="crm")])
    with logged_in_client(project, "admin") as client:
        for url in ("/sources", "/sources/crm", "/pipelines", "/api/pipelines", "/runs/1"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "Sup3rS3cret" not in response.text, url
        page = client.get("/sources/crm").text
        assert "postgresql://ana:***@db.example.org/crm?password=***" in page


# --- schedules in words -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 7 * * *", "every day at 07:00"),
        ("30 6 * * 1-5", "Monday to Friday at 06:30"),
        ("0 9 * * 0", "on Sundays at 09:00"),
        ("0 9 * * 7", "on Sundays at 09:00"),
        ("0 9 * * sat,sun", "on Saturdays and Sundays at 09:00"),
        ("0 18 * * 1,3,5", "on Mondays, Wednesdays and Fridays at 18:00"),
        ("0 7,19 * * *", "every day at 07:00 and 19:00"),
        ("0 6 1 * *", "on day 1 of every month at 06:00"),
        ("*/15 * * * *", "every 15 minutes"),
        ("5 * * * *", "every hour at :05"),
        ("0 */6 * * *", "every 6 hours at :00"),
        ("* * * * *", "every minute"),
        ("0 7 1 * 1", None),  # day of month OR day of week: shown as cron
        ("0 7 * 1 *", None),
        ("0 7-9 * * *", None),
    ],
)
def test_common_schedules_are_described_in_words(cron: str, words: str | None) -> None:
    assert describe_cron(cron) == words


# --- pipelines ----------------------------------------------------------------------------------


def test_pipelines_page_shows_schedule_next_run_and_last_run(analyst: TestClient, project: LoadedProject) -> None:
    assert "never run" in analyst.get("/pipelines").text
    first = add_run(project, status="success", started=T0)
    failed = add_run(project, status="failed", started=T0 + dt.timedelta(hours=1), error="dbt test failed\nWhy: x")
    add_run(project, status="success", pipeline="flake_rate", project_name="another_project")  # not this project's
    before = dt.datetime.now(UTC)
    page = analyst.get("/pipelines")
    after = dt.datetime.now(UTC)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = text_of(page.text)
    assert "every day at 07:00 (America/New_York)" in text and "0 7 * * * America/New_York" in text
    schedule = project.config.pipelines["flake_rate"].schedule
    assert schedule is not None
    expected = fire_times(schedule, before, before + dt.timedelta(days=2))[0]
    assert fire_times(schedule, before, after) == []
    assert expected.strftime("%Y-%m-%d %H:%M UTC") in text  # computed from the schedule: no scheduler in this app
    local = expected.astimezone(ZoneInfo("America/New_York"))
    assert f"{local:%Y-%m-%d} 07:00 {local.tzname()}" in text
    assert "This server does not run the schedules itself" in text
    assert f'<a href="/runs/{failed}">Run {failed}</a> <span class="status status-failed">failed</span>' in page.text  # the last run
    assert f'<a href="/runs/{first}">Run {first}</a>' in page.text  # the last success
    assert html_table(page.text, "runs-flake_rate")[1:] == [
        [str(failed), "failed", "cli", "2024-05-06 10:00 UTC", "5s"],
        [str(first), "success", "cli", "2024-05-06 09:00 UTC", "5s"],
    ]
    assert 'action="/pipelines/flake_rate/run"' in page.text and 'name="csrf_token"' in page.text
    assert '<script src="/static/ops.js' in page.text


def test_next_run_comes_from_the_apps_scheduler_when_it_has_one(project: LoadedProject) -> None:
    clock = dt.datetime(2024, 3, 9, 12, 0, tzinfo=UTC)  # the day before New York moves its clocks forward
    db = open_system_db(project)
    try:
        scheduler = Scheduler(project, db, lambda pipeline, trigger: "success", clock=lambda: clock)
        app = create_app(project, scheduler=scheduler)
        with TestClient(app) as client:
            log_in(client, project, "analyst")
            text = text_of(client.get("/pipelines").text)
        scheduler.shutdown()
    finally:
        db.close()
    assert "Sun 2024-03-10 07:00 EDT (2024-03-10 11:00 UTC," in text  # the scheduler's own answer (its clock)
    assert "does not run the schedules" not in text


class Gate:
    """An ``execute`` for tests: each run waits until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.calls: list[tuple[str, str]] = []
        self.started = threading.Event()

    def __call__(self, *args: Any) -> str:
        pipeline, trigger = (args[-2], args[-1])  # (project, pipeline, trigger) or the scheduler's (pipeline, trigger)
        self.calls.append((pipeline, trigger))
        self.started.set()
        assert self.open.wait(30)
        return "success"


def test_run_now_goes_through_the_scheduler_once(project: LoadedProject) -> None:
    gate = Gate()
    db = open_system_db(project)
    try:
        scheduler = Scheduler(project, db, gate)
        with TestClient(create_app(project, scheduler=scheduler)) as client:
            token = log_in(client, project, "analyst").csrf_token
            first = client.post("/pipelines/flake_rate/run", headers={"X-CSRF-Token": token}, follow_redirects=False)
            assert first.status_code == 303 and first.headers["location"] == "/pipelines?started=flake_rate#pipeline-flake_rate"
            assert gate.started.wait(10)
            assert scheduler.trigger("flake_rate", "schedule") is False  # a cron fire meanwhile: dropped too
            second = client.post("/pipelines/flake_rate/run", headers={"X-CSRF-Token": token}, follow_redirects=False)
            assert second.headers["location"] == "/pipelines?busy=flake_rate#pipeline-flake_rate"
            page = client.get(second.headers["location"])
            assert "flake_rate is already running (or queued): a second run was not started." in text_of(page.text)
            assert client.get("/api/pipelines").json()["pipelines"][0]["state"] == "running"
            gate.open.set()
            assert scheduler.wait_idle(10)
            assert client.get("/api/pipelines").json()["pipelines"][0]["state"] is None
        scheduler.shutdown()
    finally:
        db.close()
    assert gate.calls == [("flake_rate", "web")]


def test_the_launchers_own_pool_runs_one_per_pipeline_and_drops_queued_runs_at_shutdown(project: LoadedProject) -> None:
    gate = Gate()
    launcher = Launcher(project, execute=gate, workers=1)
    assert launcher.start("flake_rate") is True
    assert gate.started.wait(10)
    assert launcher.start("flake_rate") is False
    assert launcher.states() == {"flake_rate": "running"}
    with pytest.raises(Exception, match="No pipeline named 'nope'"):
        launcher.start("nope")
    gate.open.set()
    assert launcher.wait_idle(10)
    assert launcher.start("flake_rate") is True  # free again
    assert launcher.wait_idle(10)
    launcher.shutdown()
    assert launcher.start("flake_rate") is True  # a new pool after a shutdown (an app restarting)
    assert launcher.wait_idle(10)
    launcher.shutdown()
    assert gate.calls == [("flake_rate", "web")] * 3


def test_run_now_runs_the_real_pipeline_once(tmp_path: Path) -> None:
    project = make_demo_project(tmp_path / "demo", 500)
    app = create_app(project)
    with TestClient(app) as client:
        token = log_in(client, project, "analyst").csrf_token
        started = client.post("/pipelines/flake_rate/run", headers={"X-CSRF-Token": token})
        assert started.status_code == 200 and started.url.path == "/pipelines"
        assert "A run of flake_rate was queued." in text_of(started.text)
        busy = client.post("/pipelines/flake_rate/run", data={"csrf_token": token}, follow_redirects=False)
        assert busy.headers["location"].startswith("/pipelines?busy=flake_rate")
        state = client.get("/api/pipelines").json()["pipelines"][0]["state"]
        assert state in ("queued", "running")
        assert app.state.launcher.wait_idle(120)
        runs = client.get("/api/pipelines").json()["pipelines"][0]
        assert runs["state"] is None
        assert [(r["status"], r["trigger"]) for r in runs["runs"]] == [("success", "web")]
        run_id = runs["runs"][0]["id"]
        page = client.get("/pipelines").text
        assert f'<a href="/runs/{run_id}">Run {run_id}</a> <span class="status status-success">success</span>' in page
        sources = text_of(client.get("/sources").text)
        assert f"run {run_id} (success) · 2,059 rows" in sources  # 500 sign-ups and their events, statuses, ...
        assert html_table(client.get("/sources").text, "tables-campaign")[1:][5][:2] == ["signups", "500"]
        log = client.get(f"/api/runs/{run_id}/log").json()
        assert log["run"]["finished"] and log["lines"][0]["message"].startswith(f"run {run_id} started")
        assert [s["name"] for s in log["steps"]] == ["sync:campaign", "sync:roster", "dbt:build", "checks", "dashboards", "publish"]
    db = open_system_db(project)
    try:
        with db.session() as session:
            assert session.scalars(select(Run.trigger)).all() == ["web"]  # one run, never two
    finally:
        db.close()


def test_run_now_needs_the_csrf_token_and_a_known_pipeline(analyst: TestClient, project: LoadedProject) -> None:
    refused = analyst.post("/pipelines/flake_rate/run", follow_redirects=False)
    assert refused.status_code == 403 and "did not come from a Headwater page" in refused.text
    refused = analyst.post("/pipelines/flake_rate/run", headers={"X-CSRF-Token": "not-the-token"}, follow_redirects=False)
    assert refused.status_code == 403
    assert analyst.app.state.launcher.states() == {}  # type: ignore[attr-defined]
    missing = analyst.post("/pipelines/nope/run", headers={"X-CSRF-Token": csrf(analyst)}, follow_redirects=False)
    assert missing.status_code == 404 and "No pipeline named" in missing.text


def test_unknown_flash_parameters_are_ignored(analyst: TestClient) -> None:
    page = analyst.get("/pipelines?started=<script>alert(1)</script>&busy=nope")
    assert page.status_code == 200 and 'id="flash"' not in page.text and "<script>alert" not in page.text


# --- sources ------------------------------------------------------------------------------------


def test_sources_page_shows_the_last_successful_sync_freshness_and_quarantine(analyst: TestClient, project: LoadedProject) -> None:
    page = analyst.get("/sources")
    text = text_of(page.text)
    assert "campaign sqlite" in text and "all tables" in text and "Last successful sync never" in text
    assert "statuses_are_fresh not checked yet" in text
    good = add_run(
        project,
        started=T0,
        steps=[sync_step({"signups": 500, "signup_statuses": 1331}, quarantined={"signups": 2})],
        checks=[
            {"name": "statuses_are_fresh", "kind": "freshness", "status": "warn", "observed": "newest 2024-05-01 10:00 UTC (4d 23h ago)", "expected": "younger than 36h"}
        ],
    )
    add_run(project, status="failed", started=T0 + dt.timedelta(days=1), steps=[sync_step({}, status="failed")])  # a later sync failed
    page = analyst.get("/sources")
    text = text_of(page.text)
    assert f"Last successful sync 2024-05-06 09:00 UTC · run {good} (success) · 1,831 rows" in text
    assert f'<a href="/runs/{good}">run {good}</a>' in page.text
    assert html_table(page.text, "tables-campaign") == [
        ["Table", "Rows", "Seconds", "Mode", "Quarantined"], ["signups", "500", "0.25", "full", "2"], ["signup_statuses", "1,331", "0.25", "full", "—"],
    ]  # fmt: skip
    assert "Quarantined rows 2" in text
    assert "statuses_are_fresh warn signup_statuses.created_at younger than 36h (warns) · pipeline flake_rate" in text
    assert f"observed: newest 2024-05-01 10:00 UTC (4d 23h ago) · run {good}" in text
    assert "Database sources load every row or fail the run" in text


def test_quarantine_counts_show_a_dash_until_a_source_records_them(analyst: TestClient, project: LoadedProject) -> None:
    add_run(project, steps=[sync_step({"signups": 5})])
    page = analyst.get("/sources")
    assert "Quarantined rows —" in text_of(page.text)
    assert html_table(page.text, "tables-campaign")[1] == ["signups", "5", "0.25", "full", "—"]


def test_source_page_shows_settings_and_per_table_history(analyst: TestClient, project: LoadedProject) -> None:
    ids = [add_run(project, started=T0 + dt.timedelta(days=n), steps=[sync_step({"signups": 100 + n, "events": 10}, quarantined={"signups": n})]) for n in range(3)]
    failed = add_run(project, status="failed", started=T0 + dt.timedelta(days=3), steps=[sync_step({}, status="failed")])
    page = analyst.get("/sources/campaign")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "path data/campaign.db" in text and "Used by flake_rate" in text
    syncs = html_table(page.text, "syncs")
    assert syncs[0] == ["Run", "Synced", "Status", "Duration", "Rows", "Quarantined", "Error"]
    assert syncs[1] == [str(failed), "2024-05-09 09:00 UTC", "failed", "1s", "", "—", "sqlite: unable to open database file"]
    assert [row[0] for row in syncs[1:]] == [str(failed), *map(str, reversed(ids))]
    assert syncs[2][4:6] == ["112", "2"]
    assert html_table(page.text, "history-signups")[1:] == [
        [str(ids[2]), "2024-05-08 09:00 UTC", "102", "0.25", "full", "2"],
        [str(ids[1]), "2024-05-07 09:00 UTC", "101", "0.25", "full", "1"],
        [str(ids[0]), "2024-05-06 09:00 UTC", "100", "0.25", "full", "0"],
    ]
    assert [row[2] for row in html_table(page.text, "history-events")[1:]] == ["10", "10", "10"]
    assert "File and spreadsheet sources set rows that break their cleaning rules aside instead" in text  # a sqlite source quarantines nothing
    assert analyst.get("/sources/nope").status_code == 404


def test_sources_pages_show_the_notes_of_the_last_sync(analyst: TestClient, project: LoadedProject) -> None:
    """A table gone from the source stays in raw: the sync says so, and so do the sources pages."""
    step = sync_step({"signups": 5, "old_signups": 7})
    step["detail"][1] |= {"mode": "stale", "notes": ["no longer in the source (dropped, renamed, or attached as a partition): raw_campaign.old_signups keeps its 7 rows"]}
    add_run(project, steps=[step])
    overview = analyst.get("/sources").text
    assert "old_signups (stale): no longer in the source" in text_of(overview)
    assert 'id="notes-campaign"' in overview
    page = analyst.get("/sources/campaign").text
    assert 'id="notes-old_signups"' in page and "keeps its 7 rows" in page
    assert 'id="notes-signups"' not in page


# --- the run page and its live log ----------------------------------------------------------------


def test_live_log_api_pages_through_lines_after_an_id(analyst: TestClient, project: LoadedProject) -> None:
    run_id = add_run(project, status="running", steps=[sync_step({"signups": 5})], logs=LOG_PAGE + 20)
    other = add_run(project, logs=3)
    first = analyst.get(f"/api/runs/{run_id}/log").json()
    assert first["run"]["status"] == "running" and first["run"]["finished"] is False
    assert len(first["lines"]) == LOG_PAGE and first["more"] is True
    assert first["lines"][0]["message"] == "line 1" and first["lines"][0]["text"] == "09:00:00  info line 1"
    assert first["last_id"] == first["lines"][-1]["id"]
    assert first["steps"] == [{"name": "sync:campaign", "status": "success", "duration": "1s", "rows": "5", "error": ""}]
    rest = analyst.get(f"/api/runs/{run_id}/log", params={"after": first["last_id"]}).json()
    assert [line["message"] for line in rest["lines"]] == [f"line {n}" for n in range(LOG_PAGE + 1, LOG_PAGE + 21)] and rest["more"] is False
    none = analyst.get(f"/api/runs/{run_id}/log", params={"after": rest["last_id"]}).json()
    assert none["lines"] == [] and none["last_id"] == rest["last_id"]  # nothing new: the same place
    assert [line["message"] for line in analyst.get(f"/api/runs/{other}/log").json()["lines"]] == ["line 1", "line 2", "line 3"]  # only its own lines
    assert analyst.get(f"/api/runs/{run_id}/log", params={"after": -1}).status_code == 400
    assert analyst.get("/api/runs/999999/log").status_code == 404
    assert analyst.get(f"/api/runs/{2**64}/log").status_code == 404  # past SQLite's integers: no such run, not a 500
    assert analyst.get(f"/api/runs/{run_id}/log", params={"after": 2**64}).status_code == 400
    foreign = add_run(project, project_name="another_project", logs=1)
    assert analyst.get(f"/api/runs/{foreign}/log").status_code == 404


def test_run_page_follows_a_running_run_and_shows_sync_tables(analyst: TestClient, project: LoadedProject) -> None:
    running = add_run(project, status="running", steps=[sync_step({"signups": 500}, quarantined={"signups": 1})], logs=2)
    page = analyst.get(f"/runs/{running}").text
    assert '<span class="status status-running" id="run-status"' in page
    last_id = analyst.get(f"/api/runs/{running}/log").json()["last_id"]
    assert f'data-run="{running}" data-after="{last_id}" data-live="1"' in page
    assert '<script src="/static/ops.js' in page and "<script>" not in page  # no inline scripts (CSP)
    assert html_table(page, "sync-campaign")[1] == ["signups", "500", "0.25", "full", "1"]
    done = add_run(project, status="success", logs=1)
    assert "data-live" not in analyst.get(f"/runs/{done}").text


def test_ops_js_is_served(analyst: TestClient) -> None:
    script = analyst.get("/static/ops.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text and "/api/runs/" in script.text


# --- roles and navigation -------------------------------------------------------------------------


def test_viewers_cannot_open_operations_pages_and_see_no_links_to_them(project: LoadedProject) -> None:
    run_id = add_run(project, logs=1)
    with logged_in_client(project, "viewer") as viewer:
        for url in ("/sources", "/sources/campaign", "/pipelines", f"/runs/{run_id}", "/admin/users"):
            assert viewer.get(url).status_code == 403, url
        assert viewer.get(f"/api/runs/{run_id}/log").status_code == 403
        assert viewer.post("/pipelines/flake_rate/run", headers={"X-CSRF-Token": csrf(viewer)}).status_code == 403
        nav = viewer.get("/dashboards/flake_rate").text
        assert 'href="/"' in nav and all(f'href="{link}"' not in nav for link in ("/pipelines", "/runs", "/sources", "/admin/users"))


def test_navigation_links_follow_the_role(project: LoadedProject) -> None:
    with logged_in_client(project, "analyst") as analyst:
        nav = analyst.get("/pipelines").text
        assert all(f'href="{link}"' in nav for link in ("/", "/pipelines", "/runs", "/sources")) and 'href="/admin/users"' not in nav
        assert '<a href="/pipelines" aria-current="page">Pipelines</a>' in nav
        assert analyst.get("/admin/users").status_code == 403
    with logged_in_client(project, "admin") as admin:
        assert '<a href="/admin/users"' in admin.get("/sources").text


# --- users --------------------------------------------------------------------------------------


def test_admin_adds_a_user_who_can_then_log_in(client: TestClient, project: LoadedProject) -> None:
    page = client.get("/admin/users")
    assert page.status_code == 200
    assert html_table(page.text, "users")[1][:3] == ["admin@example.org (you)", "admin", "active"]
    token = csrf(client)
    added = client.post("/admin/users", data={"email": " Ana@Example.org ", "role": "analyst", "password": "a long enough password", "csrf_token": token})
    assert added.status_code == 200 and added.url.path == "/admin/users"
    assert "Added ana@example.org." in text_of(added.text)
    assert ["ana@example.org", "analyst", "active", "never"] in [row[:4] for row in html_table(added.text, "users")]
    with TestClient(client.app) as other:
        other.get("/login")
        from headwater.web.auth import LOGIN_CSRF_COOKIE

        login = other.post(
            "/login", data={"email": "ana@example.org", "password": "a long enough password", "csrf_token": other.cookies.get(LOGIN_CSRF_COOKIE)}, follow_redirects=False
        )
        assert login.status_code == 303
        assert other.get("/pipelines").status_code == 200


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"email": "not-an-address", "role": "viewer", "password": "a long enough password"}, "is not an e-mail address"),
        ({"email": "bo@example.org", "role": "viewer", "password": "Qz7!wpk"}, "The password is too short"),
        ({"email": "bo@example.org", "role": "owner", "password": "a long enough password"}, "No role named 'owner'"),
        ({"email": "admin@example.org", "role": "viewer", "password": "a long enough password"}, "There is already an account for admin@example.org"),
    ],
)
def test_adding_a_user_explains_what_is_wrong_and_keeps_the_form(client: TestClient, form: dict[str, str], message: str) -> None:
    response = client.post("/admin/users", data={**form, "csrf_token": csrf(client)})
    assert response.status_code == 400
    assert message in text_of(response.text)
    assert f'value="{form["email"]}"' in response.text  # kept, so it need not be typed again
    assert form["password"] not in response.text  # a password is never sent back


def test_admin_changes_roles_and_disables_and_enables(client: TestClient, project: LoadedProject) -> None:
    email = account(project, "viewer")
    db = open_system_db(project)
    try:
        accounts = Accounts(db)
        user_id = accounts.get(email).id
        with TestClient(client.app) as viewer:
            log_in(viewer, project, "viewer")
            assert viewer.get("/dashboards/flake_rate").status_code == 200
            token = csrf(client)
            changed = client.post(f"/admin/users/{user_id}/role", data={"role": "analyst", "csrf_token": token})
            assert "Changed the role of viewer@example.org." in text_of(changed.text)
            assert accounts.get(email).role == "analyst"
            assert viewer.get("/pipelines").status_code == 200  # the new role counts at once
            disabled = client.post(f"/admin/users/{user_id}/disabled", data={"disabled": "1", "csrf_token": token})
            assert "Disabled viewer@example.org" in text_of(disabled.text)
            assert ["viewer@example.org", "analyst", "disabled"] in [row[:3] for row in html_table(disabled.text, "users")]
            assert accounts.get(email).disabled
            assert viewer.get("/pipelines", follow_redirects=False).status_code == 303  # logged out: to the login page
            enabled = client.post(f"/admin/users/{user_id}/disabled", data={"disabled": "0", "csrf_token": token})
            assert "Enabled viewer@example.org" in text_of(enabled.text) and not accounts.get(email).disabled
            bad = client.post(f"/admin/users/{user_id}/role", data={"role": "superuser", "csrf_token": token})
            assert bad.status_code == 400 and "No role named 'superuser'" in text_of(bad.text)
            assert client.post("/admin/users/99999/role", data={"role": "viewer", "csrf_token": token}).status_code == 404
    finally:
        db.close()


def test_an_admin_cannot_demote_or_disable_themselves(client: TestClient, project: LoadedProject) -> None:
    db = open_system_db(project)
    try:
        me = Accounts(db).get("admin@example.org").id
    finally:
        db.close()
    token = csrf(client)
    for url, data in ((f"/admin/users/{me}/role", {"role": "viewer"}), (f"/admin/users/{me}/disabled", {"disabled": "1"})):
        response = client.post(url, data={**data, "csrf_token": token})
        assert response.status_code == 400 and "You cannot" in response.text
    assert client.get("/admin/users").status_code == 200  # still an admin


def test_user_changes_need_the_csrf_token(client: TestClient, project: LoadedProject) -> None:
    email = account(project, "viewer")
    response = client.post("/admin/users", data={"email": "eve@example.org", "role": "admin", "password": "a long enough password"})
    assert response.status_code == 403
    db = open_system_db(project)
    try:
        accounts = Accounts(db)
        assert [a.email for a in accounts.list_users()] == ["admin@example.org", email]
        user_id = accounts.get(email).id
        assert client.post(f"/admin/users/{user_id}/disabled", data={"disabled": "1", "csrf_token": "wrong"}).status_code == 403
        assert not accounts.get(email).disabled
    finally:
        db.close()


def test_analysts_cannot_manage_users(analyst: TestClient, project: LoadedProject) -> None:
    token = csrf(analyst)
    assert analyst.post("/admin/users", data={"email": "eve@example.org", "role": "admin", "password": PASSWORD, "csrf_token": token}).status_code == 403
    db = open_system_db(project)
    try:
        assert "eve@example.org" not in [a.email for a in Accounts(db).list_users()]
    finally:
        db.close()


def test_run_page_lists_checks_that_did_not_pass_first_with_their_samples(analyst: TestClient, project: LoadedProject) -> None:
    sample = json.dumps({"columns": ["region", "left", "right"], "rows": [["North", 5, 4]]})
    run_id = add_run(
        project,
        status="failed",
        checks=[
            {"name": "not_null_signups_id", "kind": "dbt_test", "status": "pass", "observed": "0", "expected": "0"},
            {"name": "totals_match", "kind": "reconcile", "status": "fail", "observed": "1 of 3 keys differ", "expected": "0 keys differ", "sample": sample},
            {"name": "statuses_are_fresh", "kind": "freshness", "status": "warn", "observed": "newest 2024-05-01", "expected": "younger than 36h"},
        ],
    )
    page = analyst.get(f"/runs/{run_id}").text
    assert "3 checks: 1 passed, 1 failed, 1 warned (listed first)" in text_of(page)
    assert [row[0] for row in html_table(page, "checks")[1:]] == ["totals_match", "statuses_are_fresh", "not_null_signups_id"]
    assert "Sample of what failed: totals_match" in page
    assert html_table(page, "")[-1] == ["North", "5", "4"]  # the sample table (no id)


def test_passwords_in_errors_and_log_lines_are_hidden_on_run_pages(analyst: TestClient, project: LoadedProject) -> None:
    secret = "postgresql://etl:Hunter2Hunter2@db.example.org/crm"
    run_id = add_run(
        project,
        status="failed",
        error=f"could not connect to {secret}\nWhy: refused",
        steps=[{"name": "sync:crm", "status": "failed", "error": f"could not connect to {secret}"}],
        logs=1,
    )
    db = open_system_db(project)
    try:
        with db.session() as session:
            session.add(RunLog(run_id=run_id, at=T0, level="error", message=f"sync failed: {secret}"))
            session.commit()
    finally:
        db.close()
    for url in (f"/runs/{run_id}", "/runs", f"/api/runs/{run_id}/log", "/api/pipelines", "/pipelines"):
        body = analyst.get(url).text
        assert "Hunter2Hunter2" not in body, url
    assert "postgresql://etl:***@db.example.org/crm" in analyst.get(f"/runs/{run_id}").text
