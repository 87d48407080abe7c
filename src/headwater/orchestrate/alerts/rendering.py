"""The facts of an alert, and how each channel shows them: the e-mail's text and message, Slack's
and Discord's text, the JSON payload. Pure functions of `AlertFacts`: nothing here sends or reads
the database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Literal

from headwater.config.model import EmailAlert, LoadedProject, WebhookAlert
from headwater.redact import redact as scrub
from headwater.system import Incident, Run

ERROR_LINES = 12  # how much of Run.error a message quotes
ERROR_CHARS = 1500
MAX_CHECKS = 10  # failed checks listed in a message
DISCORD_LIMIT = 2000  # Discord rejects longer content
SLACK_LIMIT = 3500  # Slack truncates long text; stay well inside


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
                f"after {self.failures} failed {runs} since {when(self.opened_at)} "
                f"(first failed run: {self.first_run_id})."
            )
        where = f" in step {self.step}" if self.step else ""
        return f"Pipeline {self.pipeline} of project {self.project} failed{where} (run {self.run_id}, attempt {self.attempt})."


def when(moment: dt.datetime) -> str:
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
        out.append(f"Incident: failing since {when(f.opened_at)}, {f.failures} failed run(s): {f.first_run_id} to {f.last_run_id}")
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


def alert_facts(project: LoadedProject, run: Run, incident: Incident, event: Literal["failure", "recovery"]) -> AlertFacts:
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


def email_message(channel: EmailAlert, facts: AlertFacts, body: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = facts.subject
    message["From"] = channel.smtp.sender
    message["To"] = ", ".join(channel.to)
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    domain = channel.smtp.sender.rpartition("@")[2].strip(" >") or "headwater.invalid"
    message["Message-ID"] = make_msgid("headwater", domain=domain)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message["X-Headwater-Project"] = facts.project
    message["X-Headwater-Pipeline"] = facts.pipeline
    message["X-Headwater-Run"] = str(facts.run_id)
    message["X-Headwater-Event"] = facts.event
    message.set_content(body)
    return message


def payload(channel: WebhookAlert, facts: AlertFacts) -> dict[str, Any]:
    if channel.format == "slack":
        return {"text": render_slack_text(facts)}
    if channel.format == "discord":
        return {"content": render_discord_text(facts), "allowed_mentions": {"parse": []}}  # no @everyone from error text
    return render_json_payload(facts)
