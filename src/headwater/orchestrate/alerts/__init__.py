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

The package: `incidents` (the bookkeeping and its locking), `rendering` (the facts of an alert and
each channel's text), `channels` (SMTP and webhook delivery, retries, descriptions without
secrets), and `notify` here, the entry. Importing it changes no process-wide state: redaction of log
records is installed by the programs that start runs and servers (`headwater.redact.install_logging`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from headwater.config.model import LoadedProject
from headwater.orchestrate.alerts.channels import Delivery, channel_secrets, deliver, describe_channel, describe_error
from headwater.orchestrate.alerts.incidents import Event, book
from headwater.orchestrate.alerts.log import Log, default_log, safe_log
from headwater.orchestrate.alerts.rendering import AlertFacts, alert_facts, render_email_text, when
from headwater.system import SystemDB


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


# --- the entry point ---------------------------------------------------------------------------


def notify(project: LoadedProject, db: SystemDB, run_id: int, *, log: Log = default_log) -> Notice | None:
    """Keep the pipeline's incident up to date after a run's final attempt, and alert on a change.

    Returns what was decided (`Notice.event`) and sent (`Notice.deliveries`), or None when there is
    nothing to say (a success with no open incident, a run not finished, a repeated call). Delivery
    problems are logged through `log` and never raised; `NotFound` is raised for an unknown run, and
    a system database that cannot be written is logged as an error (the run's own outcome stands).
    """
    try:
        booked = book(db, run_id, log)
    except SQLAlchemyError as exc:
        safe_log(log, "error", f"alerts: could not record the incident for run {run_id}: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}")
        return None
    if booked is None:
        return None
    event, run, incident = booked
    notice = partial(Notice, event, project=run.project, pipeline=run.pipeline, run_id=run.id, incident_id=incident.id, failures=incident.failures)
    if event == "still_failing":
        safe_log(
            log,
            "info",
            f"pipeline {run.pipeline} is still failing ({incident.failures} failed runs since {when(incident.opened_at)}, "
            f"first: run {incident.first_run_id}); no new alert",
        )
        return notice()

    facts = alert_facts(project, run, incident, event)
    body = render_email_text(facts)
    channels = list(project.config.alerts)
    if not channels:
        safe_log(log, "info", f"{event} of pipeline {run.pipeline} recorded; no alert channels configured (alerts: in headwater.yml)")
        return notice(subject=facts.subject, text=body)
    secrets = channel_secrets(channels)
    with ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="headwater-alert") as pool:
        deliveries = tuple(pool.map(lambda c: deliver(c, facts, body, log, secrets), channels))
    return notice(subject=facts.subject, text=body, deliveries=deliveries)


__all__ = ["AlertFacts", "Delivery", "Notice", "describe_channel", "describe_error", "notify"]
