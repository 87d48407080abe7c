"""Alerts: one message when a pipeline starts failing, one when it recovers.

`notify` is called once per run, after its final attempt (a failed attempt that will be retried never
gets here). It keeps an *incident* per (project, pipeline) in the system database:

- failed run, no open incident  → open one and send a failure alert to every channel;
- failed run, open incident     → count the failure, send nothing (one message per incident);
- successful run, open incident → close it and send a recovery alert;
- successful run, no incident   → nothing.

The bookkeeping is one transaction that commits *before* anything is sent: sending can take a while
(an SMTP server that does not answer) and must never hold the database's write lock, and a channel
that fails must not make the next run alert again. Delivery retries transient network errors a few
times, then gives up with an error line in the run log; it never raises into the run.

Secrets stay secret: the SMTP password and the webhook URL (which is a credential) never appear in
log lines, messages, errors or the system database. Channels are described as
``e-mail to a@b via smtp.example.org:587`` and ``webhook (slack) to hooks.slack.com``.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import partial
from typing import Any, Literal

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from headwater import __version__
from headwater.config.model import EmailAlert, LoadedProject, WebhookAlert
from headwater.errors import NotFound
from headwater.redact import redact as scrub
from headwater.system import Incident, Run, SystemDB

logger = logging.getLogger("headwater.alerts")

Log = Callable[[str, str], None]  # (level, message), like RunRecorder.log
Event = Literal["failure", "still_failing", "recovery"]

# Delivery policy. Module constants so tests (and, later, settings) can shorten them.
RETRY_ATTEMPTS = 3  # attempts per channel, the first included
RETRY_BACKOFF = 0.5  # seconds before the second attempt; doubles each time
RETRY_MAX_WAIT = 5.0
SMTP_TIMEOUT = 15.0  # seconds, per network operation
WEBHOOK_TIMEOUT = 15.0

ERROR_LINES = 12  # how much of Run.error a message quotes
ERROR_CHARS = 1500
MAX_CHECKS = 10  # failed checks listed in a message
DISCORD_LIMIT = 2000  # Discord rejects longer content
SLACK_LIMIT = 3500  # Slack truncates long text; stay well inside


def _default_log(level: str, message: str) -> None:
    logger.log(logging.getLevelNamesMapping().get(level.upper(), logging.INFO), "%s", message)


# --- what notify returns -----------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one alert to one channel."""

    channel: str  # description without secrets: "e-mail to a@b via smtp.example.org:587"
    ok: bool
    attempts: int
    error: str | None = None  # why it failed (secrets removed)


@dataclass(frozen=True)
class Notice:
    """What `notify` decided for one run, and what it sent."""

    event: Event
    project: str
    pipeline: str
    run_id: int
    incident_id: int
    failures: int  # failed runs in the incident so far
    subject: str | None = None  # None when nothing was sent (still_failing)
    text: str | None = None  # the plain-text body (the e-mail's)
    deliveries: tuple[Delivery, ...] = field(default_factory=tuple)

    @property
    def sent(self) -> bool:
        """At least one channel received the alert."""
        return any(d.ok for d in self.deliveries)


# --- the facts of an alert, rendered per channel -----------------------------------------------


@dataclass(frozen=True)
class CheckFact:
    name: str
    kind: str
    status: str
    observed: str | None
    expected: str | None
    message: str | None


@dataclass(frozen=True)
class AlertFacts:
    event: Literal["failure", "recovery"]
    project: str
    pipeline: str
    run_id: int
    attempt: int
    status: str
    trigger: str
    step: str | None  # the first failed step
    error: str | None  # the first lines of Run.error
    checks: tuple[CheckFact, ...]
    more_checks: int  # failed checks not listed
    incident_id: int
    opened_at: dt.datetime
    first_run_id: int
    last_run_id: int
    failures: int
    log_command: str
    log_url: str | None

    @property
    def subject(self) -> str:
        if self.event == "recovery":
            return f"[Headwater] {self.pipeline} recovered (run {self.run_id})"
        where = f": {self.step}" if self.step else ""
        return f"[Headwater] {self.pipeline} failed{where} (run {self.run_id})"

    @property
    def summary(self) -> str:
        if self.event == "recovery":
            runs = "run" if self.failures == 1 else "runs"
            return (
                f"Pipeline {self.pipeline} of project {self.project} recovered in run {self.run_id} "
                f"after {self.failures} failed {runs} since {_when(self.opened_at)} "
                f"(first failed run: {self.first_run_id})."
            )
        where = f" in step {self.step}" if self.step else ""
        return f"Pipeline {self.pipeline} of project {self.project} failed{where} (run {self.run_id}, attempt {self.attempt})."


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _first_lines(text_: str | None, lines: int = ERROR_LINES, chars: int = ERROR_CHARS) -> str | None:
    if not text_ or not text_.strip():
        return None
    kept = text_.strip().splitlines()
    excerpt = "\n".join(kept[:lines])
    if len(kept) > lines:
        excerpt += "\n…"
    return excerpt if len(excerpt) <= chars else excerpt[: chars - 1] + "…"


def _check_line(check: CheckFact) -> str:
    line = f"{check.name} ({check.kind}): {check.status}"
    if check.observed is not None or check.expected is not None:
        line += f", observed {check.observed if check.observed is not None else '?'} vs expected {check.expected if check.expected is not None else '?'}"
    if check.message:
        line += f" — {check.message.strip().splitlines()[0][:200]}"
    return line


def render_email_text(f: AlertFacts) -> str:
    out = [f.summary, ""]
    out += [f"Project:  {f.project}", f"Pipeline: {f.pipeline}", f"Run:      {f.run_id} (attempt {f.attempt}, triggered by {f.trigger})"]
    if f.event == "failure":
        out.append(f"Failed step: {f.step or '(before any step)'}")
        if f.error:
            out += ["", "Error:", *("  " + line for line in f.error.splitlines())]
        if f.checks:
            out += ["", "Failed checks:", *(f"  - {_check_line(c)}" for c in f.checks)]
            if f.more_checks:
                out.append(f"  … and {f.more_checks} more")
    else:
        out.append(f"Incident: failing since {_when(f.opened_at)}, {f.failures} failed run(s): {f.first_run_id} to {f.last_run_id}")
    out += ["", "See the log:", f"  {f.log_command}"]
    if f.log_url:
        out.append(f"  {f.log_url}")
    out.append("")
    if f.event == "failure":
        out.append("Headwater sends no further message while this pipeline keeps failing, and one when it succeeds again.")
    else:
        out.append("Headwater will send a new message if this pipeline fails again.")
    return "\n".join(out) + "\n"


def _slack_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack_text(f: AlertFacts) -> str:
    e = _slack_escape
    head = [f"*{e(f.subject)}*", e(f.summary)]
    tail = [f"Log: `{e(f.log_command)}`" + (f" · <{f.log_url}|run {f.run_id} in the web app>" if f.log_url else "")]
    body: list[str] = []
    if f.event == "failure":
        if f.error:
            body.append("```" + e(f.error.replace("```", "'''")) + "```")
        if f.checks:
            body.append("*Failed checks:*\n" + "\n".join(f"• {e(_check_line(c))}" for c in f.checks) + (f"\n• … and {f.more_checks} more" if f.more_checks else ""))
    return _fit(head, body, tail, SLACK_LIMIT)


def render_discord_text(f: AlertFacts) -> str:
    head = [f"**{f.subject}**", f.summary]
    tail = [f"Log: `{f.log_command}`" + (f" · <{f.log_url}>" if f.log_url else "")]
    body: list[str] = []
    if f.event == "failure":
        if f.error:
            body.append("```\n" + f.error.replace("```", "'''") + "\n```")
        if f.checks:
            body.append("**Failed checks:**\n" + "\n".join(f"- {_check_line(c)}" for c in f.checks) + (f"\n- … and {f.more_checks} more" if f.more_checks else ""))
    return _fit(head, body, tail, DISCORD_LIMIT)


def _fit(head: list[str], body: list[str], tail: list[str], limit: int) -> str:
    """Join the parts; shorten the middle (error, checks) so the links at the end always fit."""
    fixed = "\n".join(head + tail)
    room = limit - len(fixed) - 2 * len(body) - 1
    middle = "\n".join(body)
    if len(middle) > room:
        middle = middle[: max(room - 1, 0)].rstrip() + "…"
        if middle.count("```") % 2:  # keep a code block closed
            middle = middle[: max(room - 4, 0)].rstrip() + "…```"
    joined = "\n".join([*head, *([middle] if middle else []), *tail])
    return joined if len(joined) <= limit else joined[: limit - 1] + "…"


def render_json_payload(f: AlertFacts) -> dict[str, Any]:
    return {
        "event": f.event,
        "subject": f.subject,
        "summary": f.summary,
        "project": f.project,
        "pipeline": f.pipeline,
        "run_id": f.run_id,
        "attempt": f.attempt,
        "status": f.status,
        "trigger": f.trigger,
        "step": f.step,
        "error": f.error,
        "checks": [
            {"name": c.name, "kind": c.kind, "status": c.status, "observed": c.observed, "expected": c.expected, "message": c.message}
            for c in f.checks
        ],
        "more_checks": f.more_checks,
        "incident": {
            "id": f.incident_id,
            "opened_at": f.opened_at.astimezone(dt.UTC).isoformat(),
            "first_run_id": f.first_run_id,
            "last_run_id": f.last_run_id,
            "failures": f.failures,
        },
        "log_command": f.log_command,
        "log_url": f.log_url,
    }


def _facts(project: LoadedProject, run: Run, incident: Incident, event: Literal["failure", "recovery"]) -> AlertFacts:
    failed_step = next((s for s in run.steps if s.status == "failed"), None)
    failed_checks = [c for c in run.checks if c.status in ("fail", "error")] if event == "failure" else []
    base_url = project.config.web.base_url
    return AlertFacts(
        event=event,
        project=run.project,
        pipeline=run.pipeline,
        run_id=run.id,
        attempt=run.attempt or 1,
        status=run.status,
        trigger=run.trigger,
        step=failed_step.name if failed_step else None,
        error=_first_lines(scrub(run.error or (failed_step.error if failed_step else None))) if event == "failure" else None,
        checks=tuple(CheckFact(c.name, c.kind, c.status, c.observed, c.expected, scrub(c.message) or None) for c in failed_checks[:MAX_CHECKS]),
        more_checks=max(len(failed_checks) - MAX_CHECKS, 0),
        incident_id=incident.id,
        opened_at=incident.opened_at,
        first_run_id=incident.first_run_id,
        last_run_id=incident.last_run_id,
        failures=incident.failures,
        log_command=f"headwater logs {run.id}",
        log_url=f"{base_url.rstrip('/')}/runs/{run.id}" if base_url else None,
    )


# --- the incident bookkeeping ------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lock_pipeline(session: Session, project: str, pipeline: str) -> None:
    """Serialise bookkeeping for one pipeline, so two processes never open two incidents.

    SQLite: a write as the transaction's first statement takes the database's write lock (an UPDATE
    that changes nothing still does). PostgreSQL: a transaction-scoped advisory lock on the pair.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"headwater-incident:{project}:{pipeline}"})
    else:
        open_ = (Incident.project == project) & (Incident.pipeline == pipeline) & Incident.closed_at.is_(None)
        session.execute(update(Incident).where(open_).values(last_run_id=Incident.last_run_id).execution_options(synchronize_session=False))


def _open_incident(session: Session, project: str, pipeline: str) -> Incident | None:
    query = (
        select(Incident)
        .where(Incident.project == project, Incident.pipeline == pipeline, Incident.closed_at.is_(None))
        .order_by(Incident.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def _book(db: SystemDB, run_id: int, log: Log) -> tuple[Event, Run, Incident] | None:
    """The incident bookkeeping for one finished run, in one transaction. Returns what to announce."""
    with db.session() as session:  # a finished run does not change: read it outside the transaction
        run = session.scalars(select(Run).where(Run.id == run_id).options(selectinload(Run.steps), selectinload(Run.checks))).first()
    if run is None:
        raise NotFound(f"Run {run_id} is not in the system database", fix="Alerts are sent for recorded runs only.")
    if run.status not in ("success", "failed"):
        _safe_log(log, "warning", f"alerts: run {run.id} is {run.status}, not finished; nothing to announce")
        return None
    with db.session() as session, session.begin():
        # First statement: in SQLite a write taken after a read fails at once if another connection
        # wrote in between (the run log does, all the time); taken first, it waits its turn.
        _lock_pipeline(session, run.project, run.pipeline)
        incident = _open_incident(session, run.project, run.pipeline)

        if run.status == "failed":
            if incident is not None:
                if run.id not in (incident.first_run_id, incident.last_run_id):  # not the same run reported again
                    incident.last_run_id = max(incident.last_run_id, run.id)
                    incident.failures += 1
                return "still_failing", run, incident
            handled = session.scalars(
                select(Incident.id).where(
                    Incident.project == run.project, Incident.pipeline == run.pipeline, Incident.first_run_id <= run.id, Incident.last_run_id >= run.id
                )
            ).first()
            if handled is not None:  # a repeated call for a run of a closed incident
                return None
            incident = Incident(
                project=run.project, pipeline=run.pipeline, opened_at=run.finished_at or _now(), first_run_id=run.id, last_run_id=run.id, failures=1
            )
            session.add(incident)
            session.flush()
            return "failure", run, incident

        if incident is None or run.id < incident.first_run_id:  # healthy, or an older run reported late
            return None
        incident.closed_at = run.finished_at or _now()
        return "recovery", run, incident


# --- delivery ----------------------------------------------------------------------------------


def describe_channel(channel: EmailAlert | WebhookAlert) -> str:
    """A channel as people may read it: never the password, never the webhook's path."""
    if isinstance(channel, EmailAlert):
        return f"e-mail to {', '.join(channel.to)} via {channel.smtp.host}:{channel.smtp.port}"
    try:
        host = httpx.URL(channel.url).host or "(no host)"
    except Exception:
        host = "(invalid URL)"
    return f"webhook ({channel.format}) to {host}"


def _secrets(channels: Sequence[EmailAlert | WebhookAlert]) -> tuple[str, ...]:
    found: set[str] = set()
    for channel in channels:
        if isinstance(channel, EmailAlert):
            if channel.smtp.password:
                found.add(channel.smtp.password)
        elif channel.url:
            found.add(channel.url)
            try:
                url = httpx.URL(channel.url)
                if len(url.path) > 1:
                    found.add(url.path)
                    found.add(url.path.lstrip("/"))
                if url.query:
                    found.add(url.query.decode(errors="replace"))
                if url.userinfo:
                    found.add(url.userinfo.decode(errors="replace"))
            except Exception:  # noqa: S112 - the whole URL is already redacted
                continue
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def redact(value: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        value = value.replace(secret, "***")
    return value


# httpx logs every request's full URL at INFO level; for a webhook that URL is the credential.
_HIDDEN: ContextVar[tuple[str, ...]] = ContextVar("headwater_alert_secrets", default=())


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _HIDDEN.get()
        if secrets:
            record.msg, record.args = redact(record.getMessage(), secrets), None
        return True


for _name in ("httpx", "httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy"):
    if not any(isinstance(f, _RedactSecrets) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactSecrets())


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: network trouble and 4xx SMTP replies / 5xx and 429 HTTP answers."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code in (408, 429)
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True
    if isinstance(exc, httpx.HTTPError):
        return False
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError)):
        return False
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPException):
        return False
    if isinstance(exc, ssl.SSLError):  # certificates and protocol mismatches do not heal by retrying
        return False
    return isinstance(exc, OSError)  # refused, reset, unreachable, timed out, DNS


def _smtp_reply(code: int, message: bytes | str) -> str:
    text_ = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"{code} {' '.join(text_.split())}"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        body = " ".join(response.text.split())[:200] if response.text else ""
        return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {body}" if body else "")
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {WEBHOOK_TIMEOUT:g} s ({type(exc).__name__})"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient was refused: " + "; ".join(f"{rcpt} ({_smtp_reply(code, msg)})" for rcpt, (code, msg) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"login refused by the server: {_smtp_reply(exc.smtp_code, exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the server answered {_smtp_reply(exc.smtp_code, exc.smtp_error)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message or exc.reason}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {SMTP_TIMEOUT:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is the port right?)"
    if isinstance(exc, socket.gaierror):
        return f"host name not found ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _email(channel: EmailAlert, facts: AlertFacts, body: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = facts.subject
    message["From"] = channel.smtp.sender
    message["To"] = ", ".join(channel.to)
    message["Date"] = format_datetime(_now())
    domain = channel.smtp.sender.rpartition("@")[2].strip(" >") or "headwater.invalid"
    message["Message-ID"] = make_msgid("headwater", domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message["X-Headwater-Project"] = facts.project
    message["X-Headwater-Pipeline"] = facts.pipeline
    message["X-Headwater-Run"] = str(facts.run_id)
    message["X-Headwater-Event"] = facts.event
    message.set_content(body)
    return message


def _send_email(channel: EmailAlert, message: EmailMessage, log: Log, description: str) -> None:
    smtp = channel.smtp
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if smtp.security == "ssl":
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=SMTP_TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT)
    with client:
        client.ehlo()
        if smtp.security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        refused = client.send_message(message)
    if refused:
        listed = "; ".join(f"{rcpt} ({_smtp_reply(code, msg)})" for rcpt, (code, msg) in refused.items())
        _safe_log(log, "warning", f"alert to {description}: some recipients were refused: {listed}")


def _post_webhook(channel: WebhookAlert, payload: dict[str, Any]) -> None:
    url = httpx.URL(channel.url)
    if url.scheme not in ("http", "https"):
        raise ValueError(f"the webhook URL must start with https:// (it starts with {url.scheme or 'nothing'}://)")
    response = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT, headers={"User-Agent": f"Headwater/{__version__}"})
    response.raise_for_status()


def _payload(channel: WebhookAlert, facts: AlertFacts) -> dict[str, Any]:
    if channel.format == "slack":
        return {"text": render_slack_text(facts)}
    if channel.format == "discord":
        return {"content": render_discord_text(facts), "allowed_mentions": {"parse": []}}  # no @everyone from error text
    return render_json_payload(facts)


def _deliver(channel: EmailAlert | WebhookAlert, facts: AlertFacts, body: str, log: Log, secrets: tuple[str, ...]) -> Delivery:
    description = describe_channel(channel)
    token = _HIDDEN.set(secrets)
    attempts = 0

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        reason = redact(describe_error(exc), secrets) if exc else "unknown error"
        _safe_log(log, "warning", f"alert to {description}: attempt {state.attempt_number} failed ({reason}); trying again in {wait:.1f} s")

    try:
        send: Callable[[], None]
        if isinstance(channel, EmailAlert):
            send = partial(_send_email, channel, _email(channel, facts, body), log, description)
        else:
            send = partial(_post_webhook, channel, _payload(channel, facts))

        retrying = Retrying(
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            wait=wait_exponential(multiplier=RETRY_BACKOFF, max=RETRY_MAX_WAIT),
            retry=retry_if_exception(_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                send()
    except Exception as exc:
        reason = redact(describe_error(exc), secrets)
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        _safe_log(log, "error", f"alert to {description} failed{tried}: {reason}")
        return Delivery(description, ok=False, attempts=attempts, error=reason)
    finally:
        _HIDDEN.reset(token)
    _safe_log(log, "info", f"{facts.event} alert for run {facts.run_id} sent: {description}")
    return Delivery(description, ok=True, attempts=attempts)


def _safe_log(log: Log, level: str, message: str) -> None:
    try:
        log(level, message)
    except Exception as exc:
        logger.log(logging.WARNING if level == "info" else logging.ERROR, "%s (not written to the run's log: %s)", message, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


# --- the entry point ---------------------------------------------------------------------------


def notify(project: LoadedProject, db: SystemDB, run_id: int, *, log: Log = _default_log) -> Notice | None:
    """Keep the pipeline's incident up to date after a run's final attempt, and alert on a change.

    Returns what was decided (`Notice.event`) and sent (`Notice.deliveries`), or None when there is
    nothing to say (a success with no open incident, a run not finished, a repeated call). Delivery
    problems are logged through `log` and never raised; `NotFound` is raised for an unknown run, and
    a system database that cannot be written is logged as an error (the run's own outcome stands).
    """
    try:
        booked = _book(db, run_id, log)
    except SQLAlchemyError as exc:
        _safe_log(log, "error", f"alerts: could not record the incident for run {run_id}: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}")
        return None
    if booked is None:
        return None
    event, run, incident = booked
    common = {"project": run.project, "pipeline": run.pipeline, "run_id": run.id, "incident_id": incident.id, "failures": incident.failures}
    if event == "still_failing":
        _safe_log(
            log,
            "info",
            f"pipeline {run.pipeline} is still failing ({incident.failures} failed runs since {_when(incident.opened_at)}, "
            f"first: run {incident.first_run_id}); no new alert",
        )
        return Notice(event, **common)

    facts = _facts(project, run, incident, event)
    body = render_email_text(facts)
    channels = list(project.config.alerts)
    if not channels:
        _safe_log(log, "info", f"{event} of pipeline {run.pipeline} recorded; no alert channels configured (alerts: in headwater.yml)")
        return Notice(event, subject=facts.subject, text=body, **common)
    secrets = _secrets(channels)
    with ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="headwater-alert") as pool:
        deliveries = tuple(pool.map(lambda c: _deliver(c, facts, body, log, secrets), channels))
    return Notice(event, subject=facts.subject, text=body, deliveries=deliveries, **common)


__all__ = ["AlertFacts", "Delivery", "Notice", "describe_channel", "notify"]
