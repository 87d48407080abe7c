"""Alerts against real servers on loopback: an aiosmtpd SMTP server and an HTTP server taking webhooks.

Runs are written straight into a temporary SQLite system database (no dbt), then `notify` is called
the way the run orchestration calls it after a run's final attempt.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from loopback import Mailbox, QuietHandler, free_port, http_server
from sqlalchemy import insert, select

from headwater import redact as redaction
from headwater.config.model import LoadedProject, Project
from headwater.errors import NotFound
from headwater.orchestrate.alerts import Notice, channels, notify, rendering
from headwater.system import CheckResult, Incident, Run, RunLog, RunStep, SystemDB

PASSWORD = "pw-Zq8#secret-smtp-4711"
HOOK_PATH = "/services/T0001/B0002/hooksecretXYZ987"
ERROR = (
    "Run {id} failed in step dbt:build\n"
    "Why: model flake_rate_weekly: Binder Error: column 'signup_id' not found\n"
    "Fix: Fix the model's SQL, then run again; published data was left as it was.\n"
    "extra line 4\nextra line 5"
)


# --- servers -----------------------------------------------------------------------------------


@dataclass
class SMTPServer:
    port: int
    mailbox: Mailbox
    logins: list[tuple[str, str]] = field(default_factory=list)


def start_smtp(**kwargs: Any) -> tuple[Controller, SMTPServer]:
    mailbox = Mailbox()
    server = SMTPServer(mailbox.port, mailbox)
    controller = Controller(mailbox, hostname="127.0.0.1", port=server.port, **kwargs)
    controller.start()
    return controller, server


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    controller, server = start_smtp()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Hooks:
    port: int
    posts: list[tuple[str, Any]] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # path -> status to answer (default 200)

    def url(self, path: str = HOOK_PATH) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def bodies(self, path: str = HOOK_PATH) -> list[Any]:
        return [body for p, body in self.posts if p == path]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    state = Hooks(port=0)
    lock = threading.Lock()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state.posts.append((self.path, json.loads(body)))
            status = state.status.get(self.path, 200)
            reply = b"ok" if status == 200 else b"upstream trouble"
            if status != 200 and self.path.endswith("/echo"):  # like a server quoting the request it refuses
                reply = f"no hook at {self.path}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    with http_server(Handler) as base:
        state.port = int(base.rsplit(":", 1)[1])
        yield state


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels, "RETRY_BACKOFF", 0.02)
    monkeypatch.setattr(channels, "SMTP_TIMEOUT", 5.0)
    monkeypatch.setattr(channels, "WEBHOOK_TIMEOUT", 5.0)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# --- system database, project, runs ------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SystemDB]:
    system = SystemDB(f"sqlite:///{tmp_path}/system.db")
    try:
        yield system
    finally:
        system.close()


def make_project(root: Path, alerts_: list[dict[str, Any]], base_url: str | None = "https://data.example.org/") -> LoadedProject:
    config = Project.model_validate({"name": "demo", "alerts": alerts_, "web": {"base_url": base_url}})
    return LoadedProject(root=root, file=root / "headwater.yml", config=config)


def email_channel(port: int, **smtp: Any) -> dict[str, Any]:
    return {"type": "email", "to": ["ops@example.org", "data@example.org"], "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "from": "headwater@example.org", **smtp}}


def hook_channel(url: str, fmt: str = "slack") -> dict[str, Any]:
    return {"type": "webhook", "url": url, "format": fmt}


def make_run(
    db: SystemDB,
    status: str,
    *,
    pipeline: str = "flake_rate",
    attempt: int = 1,
    failed_step: str = "dbt:build",
    checks: list[dict[str, Any]] | None = None,
    error: str | None = ERROR,
) -> int:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    with db.session() as session, session.begin():
        run = Run(project="demo", pipeline=pipeline, status=status, trigger="schedule", started_at=start, finished_at=start + dt.timedelta(minutes=1), attempt=attempt)
        session.add(run)
        session.flush()
        names = ["sync:campaign", failed_step, "publish"] if status == "failed" else ["sync:campaign", "dbt:build", "publish"]
        for position, name in enumerate(names, 1):
            if status == "failed" and position == 3:
                break  # a failed run stops at the failed step
            step_status = "failed" if status == "failed" and position == 2 else "success"
            session.add(RunStep(run_id=run.id, position=position, name=name, status=step_status, started_at=start, finished_at=start, error="step error" if step_status == "failed" else None))
        for check in checks or []:
            session.add(CheckResult(run_id=run.id, kind="reconcile", severity="error", **check))
        if status == "failed" and error:
            run.error = error.format(id=run.id)
        return run.id


class Logs:
    """The `log` callable: collects lines and, like RunRecorder.log, writes them to the run log."""

    def __init__(self, db: SystemDB) -> None:
        self.db = db
        self.lines: list[tuple[str, str]] = []
        self.run_id: int | None = None
        self._lock = threading.Lock()

    def __call__(self, level: str, message: str) -> None:
        with self._lock:
            self.lines.append((level, message))
            if self.run_id is not None:
                with self.db.engine.begin() as con:
                    con.execute(insert(RunLog), {"run_id": self.run_id, "at": dt.datetime.now(dt.UTC), "level": level, "message": message})

    def errors(self) -> list[str]:
        return [m for level, m in self.lines if level == "error"]


@pytest.fixture
def logs(db: SystemDB) -> Logs:
    return Logs(db)


def run_and_notify(project: LoadedProject, db: SystemDB, logs: Logs, status: str, **kwargs: Any) -> tuple[int, Notice | None]:
    run_id = make_run(db, status, **kwargs)
    logs.run_id = run_id
    return run_id, notify(project, db, run_id, log=logs)


def incidents(db: SystemDB, pipeline: str = "flake_rate") -> list[Incident]:
    with db.session() as session:
        return list(session.scalars(select(Incident).where(Incident.pipeline == pipeline).order_by(Incident.id)))


# --- the incident lifecycle --------------------------------------------------------------------


def test_one_message_when_failing_starts_and_one_when_it_recovers(tmp_path: Path, db: SystemDB, logs: Logs, smtp: SMTPServer, hooks: Hooks) -> None:
    project = make_project(tmp_path, [email_channel(smtp.port), hook_channel(hooks.url())])

    # first failure: an incident opens, one e-mail and one webhook carry the facts
    first, notice = run_and_notify(project, db, logs, "failed", attempt=3)
    assert notice is not None and notice.event == "failure" and notice.sent
    assert [d.ok for d in notice.deliveries] == [True, True]
    assert len(smtp.mailbox.messages) == 1 and len(hooks.posts) == 1
    mail = smtp.mailbox.messages[0]
    assert mail["Subject"] == f"[Headwater] flake_rate failed: dbt:build (run {first})"
    assert mail["From"] == "headwater@example.org"
    assert smtp.mailbox.envelopes[0].rcpt_tos == ["ops@example.org", "data@example.org"]
    body = mail.get_content()
    for fact in (
        "Project:  demo",
        "Pipeline: flake_rate",
        f"Run:      {first} (attempt 3",
        "Failed step: dbt:build",
        f"Run {first} failed in step dbt:build",
        "Why: model flake_rate_weekly: Binder Error",
        "Fix: Fix the model's SQL",
        f"headwater logs {first}",
        f"https://data.example.org/runs/{first}",
    ):
        assert fact in body, fact
    slack = hooks.bodies()[0]
    assert set(slack) == {"text"}
    for fact in (f"flake_rate failed: dbt:build (run {first})", "Binder Error", f"headwater logs {first}", f"<https://data.example.org/runs/{first}|"):
        assert fact in slack["text"], fact
    [incident] = incidents(db)
    assert (incident.first_run_id, incident.last_run_id, incident.failures, incident.closed_at) == (first, first, 1, None)

    # three more failures: counted, nothing sent
    for _ in range(3):
        last, notice = run_and_notify(project, db, logs, "failed")
        assert notice is not None and notice.event == "still_failing" and notice.deliveries == () and not notice.sent
    assert len(smtp.mailbox.messages) == 1 and len(hooks.posts) == 1
    [incident] = incidents(db)
    assert (incident.first_run_id, incident.last_run_id, incident.failures, incident.closed_at) == (first, last, 4, None)
    assert any("still failing" in m for _, m in logs.lines)

    # success: the incident closes, one recovery message each
    recovered, notice = run_and_notify(project, db, logs, "success")
    assert notice is not None and notice.event == "recovery" and notice.failures == 4 and notice.sent
    assert len(smtp.mailbox.messages) == 2 and len(hooks.posts) == 2
    mail = smtp.mailbox.messages[1]
    assert mail["Subject"] == f"[Headwater] flake_rate recovered (run {recovered})"
    opened = incident.opened_at.strftime("%Y-%m-%d %H:%M UTC")
    assert f"after 4 failed runs since {opened}" in mail.get_content()
    assert f"headwater logs {recovered}" in mail.get_content()
    assert f"recovered in run {recovered} after 4 failed runs since {opened}" in hooks.bodies()[1]["text"]
    [incident] = incidents(db)
    assert incident.closed_at is not None and incident.failures == 4

    # another success: nothing
    _, notice = run_and_notify(project, db, logs, "success")
    assert notice is None
    assert len(smtp.mailbox.messages) == 2 and len(hooks.posts) == 2

    # failing again: a new incident, alerted again
    again, notice = run_and_notify(project, db, logs, "failed")
    assert notice is not None and notice.event == "failure"
    assert len(smtp.mailbox.messages) == 3 and len(hooks.posts) == 3
    assert [(i.first_run_id, i.closed_at is None) for i in incidents(db)] == [(first, False), (again, True)]
    assert logs.errors() == []


def test_pipelines_have_separate_incidents(tmp_path: Path, db: SystemDB, logs: Logs, hooks: Hooks) -> None:
    project = make_project(tmp_path, [hook_channel(hooks.url(), "json")])
    run_and_notify(project, db, logs, "failed", pipeline="flake_rate")
    run_and_notify(project, db, logs, "failed", pipeline="signups")
    run_and_notify(project, db, logs, "failed", pipeline="signups")
    assert [(b["event"], b["pipeline"]) for b in hooks.bodies()] == [("failure", "flake_rate"), ("failure", "signups")]

    _, notice = run_and_notify(project, db, logs, "success", pipeline="signups")
    assert notice is not None and notice.event == "recovery" and notice.failures == 2
    assert [i.closed_at is None for i in incidents(db, "flake_rate")] == [True]  # still open
    assert [i.closed_at is None for i in incidents(db, "signups")] == [False]
    _, notice = run_and_notify(project, db, logs, "failed", pipeline="flake_rate")
    assert notice is not None and notice.event == "still_failing"
    assert len(hooks.posts) == 3


def test_repeated_or_unfinished_runs_change_nothing(tmp_path: Path, db: SystemDB, logs: Logs, hooks: Hooks) -> None:
    project = make_project(tmp_path, [hook_channel(hooks.url())])
    run_id, _ = run_and_notify(project, db, logs, "failed")
    notice = notify(project, db, run_id, log=logs)  # the same run reported twice
    assert notice is not None and notice.event == "still_failing" and notice.failures == 1
    assert len(hooks.posts) == 1
    running = make_run(db, "running")
    assert notify(project, db, running, log=logs) is None
    with pytest.raises(NotFound):
        notify(project, db, 999_999, log=logs)
    assert incidents(db)[0].failures == 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SystemDB]:
    """A system database of each kind: the per-pipeline lock differs (SQLite write lock, PostgreSQL advisory lock)."""
    url = f"sqlite:///{tmp_path}/system.db" if request.param == "sqlite" else request.getfixturevalue("fresh_pg_database")
    system = SystemDB(url)
    try:
        yield system
    finally:
        system.close()


def test_concurrent_failures_open_one_incident(tmp_path: Path, any_db: SystemDB, hooks: Hooks) -> None:
    db, logs = any_db, Logs(any_db)
    project = make_project(tmp_path, [hook_channel(hooks.url(), "json")])
    runs = [make_run(db, "failed") for _ in range(4)]
    barrier = threading.Barrier(len(runs))
    results: list[Notice | None] = []

    def go(run_id: int) -> None:
        barrier.wait()
        results.append(notify(project, db, run_id, log=logs))

    threads = [threading.Thread(target=go, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(n.event for n in results if n) == ["failure", "still_failing", "still_failing", "still_failing"]
    [incident] = incidents(db)  # one, not four: the bookkeeping is serialised per pipeline
    assert incident.failures == 4 and incident.last_run_id == max(runs) and incident.first_run_id in runs
    assert len(hooks.posts) == 1
    _, notice = run_and_notify(project, db, logs, "success")
    assert notice is not None and notice.event == "recovery" and notice.failures == 4
    assert [b["event"] for b in hooks.bodies()] == ["failure", "recovery"]


def test_no_channels_still_records_the_incident(tmp_path: Path, db: SystemDB, logs: Logs) -> None:
    project = make_project(tmp_path, [])
    _, notice = run_and_notify(project, db, logs, "failed")
    assert notice is not None and notice.event == "failure" and notice.deliveries == ()
    assert len(incidents(db)) == 1


# --- message content -----------------------------------------------------------------------------

CHECKS = [
    {"name": "signups_match_source", "status": "fail", "observed": "1,204", "expected": "1,300 ± 0"},
    {"name": "campaign_fresh", "status": "pass", "observed": "2h", "expected": "≤ 26h"},
    {"name": "events_fresh", "status": "error", "observed": None, "expected": "≤ 26h", "message": "no column updated_at"},
]


def test_failed_checks_and_no_base_url(tmp_path: Path, db: SystemDB, logs: Logs, smtp: SMTPServer, hooks: Hooks) -> None:
    project = make_project(tmp_path, [email_channel(smtp.port), hook_channel(hooks.url(), "json")], base_url=None)
    run_id, notice = run_and_notify(project, db, logs, "failed", failed_step="checks", checks=CHECKS)
    assert notice is not None
    body = smtp.mailbox.bodies()[0]
    assert "signups_match_source (reconcile): fail, observed 1,204 vs expected 1,300 ± 0" in body
    assert "events_fresh (reconcile): error, observed ? vs expected ≤ 26h — no column updated_at" in body
    assert "campaign_fresh" not in body
    assert f"headwater logs {run_id}" in body and "/runs/" not in body
    assert smtp.mailbox.messages[0]["Subject"] == f"[Headwater] flake_rate failed: checks (run {run_id})"
    payload = hooks.bodies()[0]
    assert payload["log_url"] is None and payload["step"] == "checks"
    assert [(c["name"], c["observed"], c["expected"]) for c in payload["checks"]] == [("signups_match_source", "1,204", "1,300 ± 0"), ("events_fresh", None, "≤ 26h")]


def test_discord_and_json_formats(tmp_path: Path, db: SystemDB, logs: Logs, hooks: Hooks) -> None:
    long_error = "Run {id} failed in step dbt:build\nWhy: " + "x" * 5000 + "\nFix: shorten it"
    project = make_project(tmp_path, [hook_channel(hooks.url("/discord"), "discord"), hook_channel(hooks.url("/json"), "json")])
    run_id, _ = run_and_notify(project, db, logs, "failed", attempt=2, checks=CHECKS[:1], error=long_error)

    [discord] = hooks.bodies("/discord")
    assert set(discord) == {"content", "allowed_mentions"} and discord["allowed_mentions"] == {"parse": []}
    content = discord["content"]
    assert len(content) <= 2000
    assert content.startswith(f"**[Headwater] flake_rate failed: dbt:build (run {run_id})**")
    assert f"headwater logs {run_id}" in content and f"https://data.example.org/runs/{run_id}" in content  # links survive shortening
    assert content.count("```") % 2 == 0

    [payload] = hooks.bodies("/json")
    assert {k: payload[k] for k in ("event", "project", "pipeline", "run_id", "attempt", "status", "step", "log_url", "log_command")} == {
        "event": "failure",
        "project": "demo",
        "pipeline": "flake_rate",
        "run_id": run_id,
        "attempt": 2,
        "status": "failed",
        "step": "dbt:build",
        "log_url": f"https://data.example.org/runs/{run_id}",
        "log_command": f"headwater logs {run_id}",
    }
    assert payload["error"].startswith(f"Run {run_id} failed in step dbt:build") and len(payload["error"]) <= rendering.ERROR_CHARS
    assert payload["checks"][0]["name"] == "signups_match_source"
    assert payload["incident"]["first_run_id"] == run_id and payload["incident"]["failures"] == 1

    recovered, _ = run_and_notify(project, db, logs, "success")
    [_, discord] = hooks.bodies("/discord")
    assert discord["content"].startswith(f"**[Headwater] flake_rate recovered (run {recovered})**")
    [_, payload] = hooks.bodies("/json")
    assert (payload["event"], payload["status"], payload["step"], payload["error"], payload["checks"]) == ("recovery", "success", None, None, [])
    assert payload["incident"]["last_run_id"] == run_id


# --- delivery failures ---------------------------------------------------------------------------


def test_smtp_server_down(tmp_path: Path, db: SystemDB, logs: Logs, hooks: Hooks) -> None:
    closed = free_port()  # nothing listens here
    project = make_project(tmp_path, [email_channel(closed), hook_channel(hooks.url())])
    started = time.monotonic()
    _, notice = run_and_notify(project, db, logs, "failed")
    assert time.monotonic() - started < 5
    assert notice is not None and notice.event == "failure"
    mail, hook = notice.deliveries
    assert not mail.ok and mail.attempts == channels.RETRY_ATTEMPTS and "connection refused" in (mail.error or "")
    assert hook.ok and len(hooks.posts) == 1
    [error] = logs.errors()
    assert error.startswith(f"alert to e-mail to ops@example.org, data@example.org via 127.0.0.1:{closed} failed after 3 attempts: connection refused")
    assert len(incidents(db)) == 1  # recorded despite the failure: the next failed run does not alert again
    _, notice = run_and_notify(project, db, logs, "failed")
    assert notice is not None and notice.event == "still_failing" and len(hooks.posts) == 1


def test_webhook_errors_are_retried_then_logged(tmp_path: Path, db: SystemDB, logs: Logs, smtp: SMTPServer, hooks: Hooks) -> None:
    hooks.status = {"/busy": 500, "/gone": 404}
    project = make_project(tmp_path, [hook_channel(hooks.url("/busy")), hook_channel(hooks.url("/gone"), "json"), email_channel(smtp.port)])
    _, notice = run_and_notify(project, db, logs, "failed")
    assert notice is not None
    busy, gone, mail = notice.deliveries
    assert len(hooks.bodies("/busy")) == 3 and (busy.ok, busy.attempts) == (False, 3)  # 5xx: retried
    assert len(hooks.bodies("/gone")) == 1 and (gone.ok, gone.attempts) == (False, 1)  # 4xx: not retried
    assert mail.ok and len(smtp.mailbox.messages) == 1
    errors = sorted(logs.errors())
    assert errors == [
        "alert to webhook (json) to 127.0.0.1 failed: HTTP 404 Not Found: upstream trouble",
        "alert to webhook (slack) to 127.0.0.1 failed after 3 attempts: HTTP 500 Internal Server Error: upstream trouble",
    ]
    assert sum("trying again" in m for level, m in logs.lines if level == "warning") == 2
    assert len(incidents(db)) == 1


def test_invalid_webhook_url_is_logged_not_raised(tmp_path: Path, db: SystemDB, logs: Logs) -> None:
    project = make_project(tmp_path, [hook_channel("ftp://hooks.example.org/T1/secretpath"), hook_channel("")])
    _, notice = run_and_notify(project, db, logs, "failed")
    assert notice is not None and [d.ok for d in notice.deliveries] == [False, False]
    assert len(logs.errors()) == 2 and all("secretpath" not in e for e in logs.errors())


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("STARTTLS/SSL tests need the openssl command to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def _authenticator(server: SMTPServer) -> Any:
    def check(_server: Any, _session: Any, _envelope: Any, _mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            server.logins.append((login, password))
            return AuthResult(success=password == PASSWORD, handled=False)  # handled=False: aiosmtpd answers 535
        return AuthResult(success=False, handled=False)

    return check


@pytest.fixture
def tls_smtp(certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    mailbox = Mailbox()
    server = SMTPServer(mailbox.port, mailbox)
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=server.port, tls_context=_server_context(certificate), require_starttls=True, authenticator=_authenticator(server), auth_require_tls=True
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


def test_starttls_with_login(tmp_path: Path, db: SystemDB, logs: Logs, tls_smtp: SMTPServer, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    channel = email_channel(tls_smtp.port, security="starttls", username="alerts", password=PASSWORD)
    project = make_project(tmp_path, [channel])

    # the certificate is not trusted yet: refused at once (no retry: it will not heal by itself)
    _, notice = run_and_notify(project, db, logs, "failed")
    assert notice is not None
    [delivery] = notice.deliveries
    assert (delivery.ok, delivery.attempts) == (False, 1) and "TLS certificate not trusted" in (delivery.error or "")
    assert tls_smtp.mailbox.messages == [] and tls_smtp.logins == []

    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust it, as an installed CA would be
    recovered, _ = run_and_notify(project, db, logs, "success")
    assert tls_smtp.logins == [("alerts", PASSWORD)]
    assert [m["Subject"] for m in tls_smtp.mailbox.messages] == [f"[Headwater] flake_rate recovered (run {recovered})"]

    bad = make_project(tmp_path, [email_channel(tls_smtp.port, security="starttls", username="alerts", password="wrong-password-123")])
    _, notice = run_and_notify(bad, db, logs, "failed")
    assert notice is not None and not notice.deliveries[0].ok and notice.deliveries[0].attempts == 1
    assert "login refused by the server: 535" in logs.errors()[-1]
    assert "wrong-password-123" not in logs.errors()[-1]


def test_implicit_tls(tmp_path: Path, db: SystemDB, logs: Logs, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    controller, server = start_smtp(ssl_context=_server_context(certificate))
    try:
        project = make_project(tmp_path, [email_channel(server.port, security="ssl")])
        _, notice = run_and_notify(project, db, logs, "failed")
        assert notice is not None and notice.deliveries[0].ok
        assert len(server.mailbox.messages) == 1
    finally:
        controller.stop()


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_never_leak(tmp_path: Path, db: SystemDB, logs: Logs, hooks: Hooks, caplog: pytest.LogCaptureFixture) -> None:
    redaction.install_logging()  # as every program that runs pipelines does (the CLI, a run's process, the web app)
    caplog.set_level(logging.DEBUG)  # httpx logs request URLs at INFO, httpcore more at DEBUG
    mailbox = Mailbox()
    server = SMTPServer(mailbox.port, mailbox)
    controller = Controller(mailbox, hostname="127.0.0.1", port=server.port, authenticator=_authenticator(server), auth_require_tls=False)
    controller.start()
    try:
        hooks.status = {HOOK_PATH + "/broken": 500, HOOK_PATH + "/echo": 404}
        project = make_project(
            tmp_path,
            [
                email_channel(server.port, username="alerts", password=PASSWORD),  # plain: login sent in the clear, on loopback only
                email_channel(free_port(), username="alerts", password=PASSWORD),  # down
                hook_channel(hooks.url()),
                hook_channel(hooks.url(HOOK_PATH + "/broken"), "json"),
                hook_channel(hooks.url(HOOK_PATH + "/echo"), "discord"),  # its error quotes the URL's path
            ],
        )
        notices = [run_and_notify(project, db, logs, status)[1] for status in ("failed", "failed", "success")]
        assert [n.event for n in notices if n] == ["failure", "still_failing", "recovery"]
        assert len(server.mailbox.messages) == 2 and len(hooks.bodies()) == 2
        assert any("HTTP 404 Not Found: no hook at ***" in m for m in logs.errors())  # quoted, redacted
        assert server.logins == [("alerts", PASSWORD)] * 2  # the password did reach the server
    finally:
        controller.stop()

    secrets = [PASSWORD, HOOK_PATH, HOOK_PATH.lstrip("/"), "hooksecretXYZ987"]
    texts = [m for _, m in logs.lines] + [r.getMessage() for r in caplog.records]
    for notice in notices:
        assert notice is not None
        texts += [notice.subject or "", notice.text or "", *(f"{d.channel} {d.error}" for d in notice.deliveries)]
    texts += [json.dumps(body) for _, body in hooks.posts] + [m.as_string() for m in server.mailbox.messages]
    assert any("webhook (slack) to 127.0.0.1" in t for t in texts)
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)  # httpx did log, redacted
    for secret in secrets:
        leaks = [t for t in texts if secret in t]
        assert leaks == [], f"{secret!r} leaked: {leaks[:3]}"

    db.close()  # checkpoint the WAL into the file
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("system.db*"))
    assert b"alert to" in stored  # the log lines are there
    for secret in secrets:
        assert secret.encode() not in stored


def test_a_webhook_token_in_the_user_info_is_hidden_while_delivering() -> None:
    project = make_project(Path("."), [hook_channel("https://t0ken-ABCD1234@hooks.example.org/"), email_channel(25, username="alerts", password=PASSWORD)])
    secrets = channels.channel_secrets(project.config.alerts)
    line = "POST https://t0ken-ABCD1234@hooks.example.org/ refused; login alerts / " + PASSWORD
    assert redaction.redact(line) == line  # nothing registered for the whole process
    with redaction.hiding(secrets):
        hidden = redaction.redact(line)
        assert "t0ken-ABCD1234" not in hidden and PASSWORD not in hidden and "hooks.example.org" not in hidden
    assert redaction.redact(line) == line  # only while delivering


def test_importing_alerts_changes_no_logging_state() -> None:
    """Importing the package installs nothing process-wide: no logger's or handler's filters, no
    record factory. Redaction of log records is installed by the programs (headwater.redact.install_logging)."""
    script = """
import logging
logging.basicConfig()
logging.getLogger().handlers[0].addFilter(lambda record: True)
def state():
    loggers = {name: list(logger.filters) for name, logger in logging.root.manager.loggerDict.items() if isinstance(logger, logging.Logger)}
    handlers = [(handler, list(handler.filters)) for handler in logging.getLogger().handlers]
    return loggers, list(logging.getLogger().filters), handlers, logging.getLogRecordFactory()
before = state()
import headwater.orchestrate.alerts
import headwater.orchestrate.alerts.channels
loggers, root, handlers, factory = state()
assert {name: f for name, f in loggers.items() if f} == {n: f for n, f in before[0].items() if f}, loggers
assert (root, handlers, factory) == before[1:], (root, handlers, factory)
assert "httpx" in loggers  # httpx was imported: its loggers exist, untouched
print("unchanged")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "unchanged", done.stderr
