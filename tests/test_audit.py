"""The audit log: who did what, when, in which organisation — from the service, the command line
(accounts, secrets, runs) and the scheduler."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_process import run_cli
from conftest_web import PASSWORD as WEB_PASSWORD
from conftest_web import empty_project_fixture, log_in, project_fixture  # noqa: F401 - fixtures by name
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from headwater import redact as redaction
from headwater.config.model import LoadedProject, Project
from headwater.system import SystemDB, audit
from headwater.system.models import AuditEntry, Organisation
from headwater.system.orgs import Install

PASSWORD = "correct horse battery staple"
ME = f"cli:{getpass.getuser()}"


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test registers as secret is forgotten after it (the registry is process-wide)."""
    monkeypatch.setattr(redaction, "_registry", redaction._registry.copy())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SystemDB]:
    system = SystemDB(f"sqlite:///{tmp_path / 'system.db'}")
    with system.session() as session:
        session.add(Organisation(slug="acme", name="Acme", created_at=dt.datetime.now(dt.UTC)))
        session.commit()
    yield system
    system.close()


def all_entries(db: SystemDB) -> list[audit.Event]:
    """Every entry of every organisation, oldest first."""
    with db.session() as session:
        slugs = [None, *session.scalars(select(Organisation.slug))]
    events = [e for slug in slugs for e in audit.query(db, slug, limit=1000)]
    return sorted(events, key=lambda e: e.id)


# --- the service ---------------------------------------------------------------------------------


def test_record_and_query_say_who_what_when_and_where(db: SystemDB) -> None:
    before = dt.datetime.now(dt.UTC)
    audit.record(db, org="default", actor="ana@example.org", action="export", target="flake_rate_weekly", detail={"format": "csv"}, ip="203.0.113.9")
    audit.record(db, org="acme", actor="ben@example.org", action="login", target="ben@example.org", ip="2001:db8::1")
    audit.record(db, org=None, actor="mallory@example.org", action="login_failed", target="mallory@example.org", detail={"reason": "wrong e-mail or password"})
    [export] = audit.query(db, "default")
    assert (export.org, export.actor, export.action, export.target, export.detail, export.ip) == ("default", "ana@example.org", "export", "flake_rate_weekly", {"format": "csv"}, "203.0.113.9")
    assert before <= export.at <= dt.datetime.now(dt.UTC) and export.at.tzinfo is not None
    assert [e.action for e in audit.query(db, "acme")] == ["login"]
    assert [(e.org, e.action) for e in audit.query(db, None)] == [(None, "login_failed")]


def test_an_unknown_organisation_is_recorded_as_none(db: SystemDB) -> None:
    audit.record(db, org="no-such-org", actor="x@example.org", action="login_failed", target="x@example.org")
    assert [e.target for e in audit.query(db, None)] == ["x@example.org"]


def test_query_pages_newest_first(db: SystemDB) -> None:
    for n in range(7):
        audit.record(db, org="default", actor="cli:ops", action="run_triggered", target=f"p{n}")
    first = audit.query(db, "default", limit=3)
    assert [e.target for e in first] == ["p6", "p5", "p4"]
    second = audit.query(db, "default", limit=3, before=first[-1].id)
    assert [e.target for e in second] == ["p3", "p2", "p1"]
    assert [e.target for e in audit.query(db, "default", limit=3, before=second[-1].id)] == ["p0"]


def test_detail_never_holds_a_secret(db: SystemDB) -> None:
    secret = "s3cret-token-for-audit"
    redaction.register(secret)
    audit.record(db, org="default", actor="cli:ops", action="secret_set", target="TOKEN", detail={"note": f"was {secret}", "dsn": "postgresql://u:pw123@h/db"})
    [entry] = audit.query(db, "default")
    assert entry.detail == {"note": "was ***", "dsn": "postgresql://u:***@h/db"}


def test_long_targets_are_shortened_to_fit(db: SystemDB) -> None:
    audit.record(db, org="default", actor="a" * 300, action="export", target="t" * 300)
    [entry] = audit.query(db, "default")
    assert len(entry.actor) == 254 and len(entry.target) == 255 and entry.target.endswith("…")


def test_add_commits_with_the_callers_change(db: SystemDB) -> None:
    with db.session() as session:
        with session.begin():
            audit.add(session, org="default", actor="cli:ops", action="user_added", target="a@example.org")
        with pytest.raises(RuntimeError), session.begin():
            audit.add(session, org="default", actor="cli:ops", action="user_added", target="b@example.org")
            raise RuntimeError("the change failed")
    assert [e.target for e in audit.query(db, "default")] == ["a@example.org"]


def test_deleting_an_organisation_deletes_its_entries(db: SystemDB) -> None:
    audit.record(db, org="acme", actor="cli:ops", action="login", target="a@example.org")
    audit.record(db, org="default", actor="cli:ops", action="login", target="b@example.org")
    with db.session() as session:
        session.delete(session.scalars(select(Organisation).where(Organisation.slug == "acme")).one())
        session.commit()
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 1  # no entry left pointing at a reused id


# --- the command line ------------------------------------------------------------------------------


def hw(*args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return run_cli(*args, cwd=cwd, stdin=stdin, env=environment)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    from headwater.scaffold import init_project

    root = tmp_path / "p"
    init_project(root, "audited")
    return root


def project_db(root: Path) -> SystemDB:
    return SystemDB(f"sqlite:///{root / '.headwater' / 'system.db'}")


def test_cli_account_changes_are_audited(project_dir: Path) -> None:
    steps = [
        (["user", "add", "ana@example.org", "--role", "viewer", "--password-stdin"], PASSWORD + "\n"),
        (["user", "set-role", "ana@example.org", "analyst"], None),
        (["user", "set-password", "ana@example.org", "--password-stdin"], PASSWORD + " two\n"),
        (["user", "disable", "ana@example.org"], None),
        (["user", "enable", "ana@example.org"], None),
    ]
    for args, stdin in steps:
        result = hw(*args, cwd=project_dir, stdin=stdin)
        assert result.returncode == 0, result.stderr
    db = project_db(project_dir)
    try:
        events = all_entries(db)
    finally:
        db.close()
    assert [(e.org, e.actor, e.action, e.target, e.detail) for e in events] == [
        ("default", ME, "user_added", "ana@example.org", {"role": "viewer"}),
        ("default", ME, "role_changed", "ana@example.org", {"role": "analyst"}),
        ("default", ME, "password_changed", "ana@example.org", {}),
        ("default", ME, "user_disabled", "ana@example.org", {}),
        ("default", ME, "user_enabled", "ana@example.org", {}),
    ]
    assert PASSWORD not in json.dumps([e.detail for e in events])


def test_cli_secret_changes_are_audited_without_values(project_dir: Path, tmp_path: Path) -> None:
    env = {"HEADWATER_SECRET_KEY_FILE": str(tmp_path / "secret.key")}
    value = "value-that-must-not-be-audited"
    for args, stdin in [(["secrets", "set", "API_TOKEN", "--value-stdin"], value), (["secrets", "set", "API_TOKEN", "--value-stdin"], value + "2"), (["secrets", "rotate-key"], None), (["secrets", "delete", "API_TOKEN"], None)]:
        result = hw(*args, cwd=project_dir, stdin=stdin, env=env)
        assert result.returncode == 0, result.stderr
    db = project_db(project_dir)
    try:
        events = all_entries(db)
        with db.engine.connect() as con:
            stored = json.dumps([list(map(str, row)) for row in con.exec_driver_sql("SELECT * FROM audit_log")])
    finally:
        db.close()
    assert [(e.org, e.actor, e.action, e.target) for e in events] == [
        ("default", ME, "secret_set", "API_TOKEN"),
        ("default", ME, "secret_set", "API_TOKEN"),
        (None, ME, "key_rotated", "secret key"),
        ("default", ME, "secret_deleted", "API_TOKEN"),
    ]
    assert [e.detail.get("created") for e in events[:2]] == [True, False] and events[2].detail["secrets"] == 1
    assert value not in stored


def test_cli_run_is_audited_as_run_triggered(project_dir: Path) -> None:
    with open(project_dir / "headwater.yml", "a") as handle:  # a run that fails at once: the source file is missing
        handle.write("sources:\n  gone:\n    type: sqlite\n    path: data/gone.db\n")
    content = (project_dir / "headwater.yml").read_text().replace("sources: {}\n", "")
    (project_dir / "headwater.yml").write_text(content)
    result = hw("run", cwd=project_dir)
    assert result.returncode != 0 and "gone.db" in result.stderr
    db = project_db(project_dir)
    try:
        events = all_entries(db)
    finally:
        db.close()
    assert [(e.org, e.actor, e.action, e.target, e.detail) for e in events] == [("default", ME, "run_triggered", "default", {"trigger": "cli"})]


# --- the scheduler ---------------------------------------------------------------------------------


def test_scheduled_and_dependent_runs_are_audited_as_the_scheduler(tmp_path: Path, db: SystemDB) -> None:
    from headwater.orchestrate.scheduler import Scheduler

    calls: list[tuple[str, str]] = []
    done = threading.Event()

    def execute(pipeline: str, trigger: str) -> str:  # the scheduler's seam: what would start a run
        calls.append((pipeline, trigger))
        if pipeline == "report":
            done.set()
        return "success"

    config = Project.model_validate({"name": "acme", "pipelines": {"daily": {"schedule": {"cron": "0 7 * * *"}}, "report": {"after": ["daily"]}, "adhoc": {}}})
    scheduler = Scheduler(LoadedProject(root=tmp_path, file=tmp_path / "headwater.yml", config=config), db, execute)
    try:
        scheduler._fire("daily")  # what APScheduler calls at 07:00
        assert done.wait(10) and scheduler.wait_idle(10)
        scheduler.trigger("adhoc", "web")  # audited by the web app, with the person who clicked
        assert scheduler.wait_idle(10)
    finally:
        scheduler.shutdown(wait=True)
    assert calls == [("daily", "schedule"), ("report", "after:daily"), ("adhoc", "web")]
    events = all_entries(db)
    assert [(e.org, e.actor, e.action, e.target, e.detail) for e in events] == [
        ("default", "scheduler", "run_triggered", "daily", {"trigger": "schedule"}),
        ("default", "scheduler", "run_triggered", "report", {"trigger": "after:daily"}),
    ]


# --- the web app -------------------------------------------------------------------------------------


def test_web_events_are_audited_with_who_and_from_where(project: LoadedProject) -> None:
    from headwater.orchestrate.scheduler import Scheduler
    from headwater.system import open_system_db
    from headwater.web import create_app
    from headwater.web.auth import LOGIN_CSRF_COOKIE

    db = open_system_db(project)
    scheduler = Scheduler(project, db, lambda pipeline, trigger: "success")  # "run now" goes through it; no real run
    try:
        with TestClient(create_app(project, scheduler=scheduler)) as client:
            admin = log_in(client, project, "admin")  # makes the account (not through the web: not audited)
            client.cookies.clear()
            for email, password in (("admin@example.org", "not the password"), ("nobody@example.org", "whatever-1234"), ("admin@example.org", WEB_PASSWORD)):
                client.get("/login")
                client.post("/login", data={"email": email, "password": password, "csrf_token": client.cookies.get(LOGIN_CSRF_COOKIE) or ""}, follow_redirects=False)
            token = {"X-CSRF-Token": next(iter(_csrf_tokens(client)))}
            assert client.get("/tables/flake_rate_weekly.csv").status_code == 200
            assert client.post("/pipelines/flake_rate/run", headers=token, follow_redirects=False).status_code == 303
            assert scheduler.wait_idle(10)
            added = client.post("/admin/users", data={"email": "cy@example.org", "role": "viewer", "password": "a long enough password"}, headers=token)
            assert added.status_code == 200
            user_id = _user_id(db, "cy@example.org")
            assert client.post(f"/admin/users/{user_id}/role", data={"role": "analyst"}, headers=token).status_code == 200
            assert client.post(f"/admin/users/{user_id}/disabled", data={"disabled": "1"}, headers=token).status_code == 200
        default = sorted(audit.query(db, "default", limit=100), key=lambda e: e.id)
        outside = audit.query(db, None)
    finally:
        scheduler.shutdown(wait=True)
        db.close()
    assert admin.email == "admin@example.org"
    assert [(e.actor, e.action, e.target) for e in default] == [
        ("admin@example.org", "login_failed", "admin@example.org"),
        ("admin@example.org", "login", "admin@example.org"),
        ("admin@example.org", "export", "flake_rate_weekly"),
        ("admin@example.org", "run_triggered", "flake_rate"),
        ("admin@example.org", "user_added", "cy@example.org"),
        ("admin@example.org", "role_changed", "cy@example.org"),
        ("admin@example.org", "user_disabled", "cy@example.org"),
    ]
    assert all(e.ip == "testclient" and e.org == "default" for e in default)
    assert default[2].detail["format"] == "csv" and default[5].detail == {"role": "analyst"}
    assert WEB_PASSWORD not in json.dumps([e.detail for e in default])
    assert [(e.actor, e.action, e.org) for e in outside] == [("nobody@example.org", "login_failed", None)]


def _csrf_tokens(client: TestClient) -> list[str]:
    import re

    return re.findall(r'name="csrf_token" value="([^"]+)"', client.get("/no-such-page").text)


def _user_id(db: SystemDB, email: str) -> int:
    from headwater.system.models import User

    with db.session() as session:
        return session.scalars(select(User.id).where(User.email == email)).one()


# --- an install of many organisations: each run is filed under its own organisation -----------------


@pytest.fixture
def two_orgs(tmp_path: Path) -> Iterator[Install]:
    """An install with organisations acme and beta, each a scaffolded project recording its runs in
    the install's database, with a scheduled pipeline whose source is missing (a run fails at once)."""
    from headwater.cli.orgs import point_at_install
    from headwater.scaffold import init_project
    from headwater.system.orgs import Install, Organisations, project_name

    install = Install.create(tmp_path / "inst")
    db = install.open_db()
    try:
        for slug in ("acme", "beta"):
            folder = install.root / "orgs" / slug
            init_project(folder, project_name(slug))
            text = point_at_install((folder / "headwater.yml").read_text(), project_name(slug), install.project_system_url())
            text = text.replace("sources: {}\n", "sources:\n  gone:\n    type: sqlite\n    path: data/gone.db\n")
            text = text.replace("pipelines: {}\n", "pipelines:\n  nightly:\n    schedule: {cron: '0 3 * * *'}\n")
            (folder / "headwater.yml").write_text(text)
            Organisations(db).create(slug, project_path=str(folder.resolve()))
    finally:
        db.close()
    yield install


def install_entries(install: Install) -> list[audit.Event]:
    db = install.open_db()
    try:
        return all_entries(db)
    finally:
        db.close()


def org_project(install: Install, slug: str) -> LoadedProject:
    from headwater.system.orgs import Organisations

    db = install.open_db()
    try:
        return install.load_project(Organisations(db).get(slug))
    finally:
        db.close()


def test_an_organisations_cli_run_is_filed_under_it(two_orgs: Install) -> None:
    result = hw("run", cwd=two_orgs.root / "orgs" / "beta")
    assert result.returncode != 0 and "gone.db" in result.stderr
    assert [(e.org, e.actor, e.action, e.target, e.detail) for e in install_entries(two_orgs)] == [("beta", ME, "run_triggered", "nightly", {"trigger": "cli"})]


def test_an_organisations_scheduled_runs_are_filed_under_it(two_orgs: Install) -> None:
    from headwater.orchestrate.scheduler import Scheduler

    db = two_orgs.open_db()
    scheduler = Scheduler(org_project(two_orgs, "acme"), db, lambda pipeline, trigger: "success")
    try:
        scheduler._fire("nightly")  # what APScheduler calls at 03:00
        assert scheduler.wait_idle(10)
    finally:
        scheduler.shutdown(wait=True)
        db.close()
    assert [(e.org, e.actor, e.target, e.detail) for e in install_entries(two_orgs)] == [("acme", "scheduler", "nightly", {"trigger": "schedule"})]


@pytest.mark.parametrize("through_scheduler", [True, False])
def test_an_organisations_run_now_is_filed_under_it(two_orgs: Install, through_scheduler: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest_web import FAST_HASHER, form_log_in, member

    from headwater.orchestrate.scheduler import Scheduler
    from headwater.web import create_app
    from headwater.web import launcher as web_launcher
    from headwater.web.auth import AuthSettings

    started: list[tuple[str, str]] = []
    monkeypatch.setattr(web_launcher, "_supervised", lambda project, pipeline, trigger: started.append((project.config.name, pipeline)))
    member(two_orgs, "admin-beta@example.org", "beta", "admin")
    db = two_orgs.open_db()
    jobs = {"beta": Scheduler(org_project(two_orgs, "beta"), db, lambda pipeline, trigger: started.append(("beta", pipeline)) or "success")} if through_scheduler else {}
    try:
        with TestClient(create_app(two_orgs, AuthSettings(hasher=FAST_HASHER), schedulers=jobs)) as client:
            form_log_in(client, "admin-beta@example.org")
            page = client.get("/o/beta/pipelines").text
            token = {"X-CSRF-Token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)}  # type: ignore[union-attr]
            assert client.post("/o/beta/pipelines/nightly/run", headers=token, follow_redirects=False).status_code == 303
            assert (jobs["beta"] if jobs else client.app.state.auth.tenancy.site("beta").launcher).wait_idle(10)  # type: ignore[attr-defined]
    finally:
        for job in jobs.values():
            job.shutdown(wait=True)
        db.close()
    assert len(started) == 1
    runs = [(e.org, e.actor, e.target) for e in install_entries(two_orgs) if e.action == "run_triggered"]
    assert runs == [("beta", "admin-beta@example.org", "nightly")]
