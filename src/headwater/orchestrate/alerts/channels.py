"""Delivery of one alert to one channel: e-mail over SMTP, webhooks over HTTP (httpx); transient
failures retried a few times, then logged. Nothing here raises into the run.

Secrets stay secret: the SMTP password and the webhook URL (which is a credential) never appear in
log lines, errors or `Delivery`. Channels are described as ``e-mail to a@b via smtp.example.org:587``
and ``webhook (slack) to hooks.slack.com``; each delivery runs inside `headwater.redact.hiding` with
the channels' secrets, so `redact` — and every log record, httpx's request lines included, in a
process that ran `headwater.redact.install_logging` — hides them too.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from functools import partial
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from headwater import __version__
from headwater.config.model import EmailAlert, WebhookAlert
from headwater.orchestrate.alerts.log import Log, safe_log
from headwater.orchestrate.alerts.rendering import AlertFacts, email_message, payload
from headwater.redact import Secrets, hiding, redact

# Delivery policy. Module constants so tests (and, later, settings) can shorten them.
RETRY_ATTEMPTS = 3  # attempts per channel, the first included
RETRY_BACKOFF = 0.5  # seconds before the second attempt; doubles each time
RETRY_MAX_WAIT = 5.0
SMTP_TIMEOUT = 15.0  # seconds, per network operation
WEBHOOK_TIMEOUT = 15.0


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one alert to one channel."""

    channel: str  # description without secrets: "e-mail to a@b via smtp.example.org:587"
    ok: bool
    attempts: int
    error: str | None = None  # why it failed (secrets removed)


def describe_channel(channel: EmailAlert | WebhookAlert) -> str:
    """A channel as people may read it: never the password, never the webhook's path."""
    if isinstance(channel, EmailAlert):
        return f"e-mail to {', '.join(channel.to)} via {channel.smtp.host}:{channel.smtp.port}"
    try:
        host = httpx.URL(channel.url).host or "(no host)"
    except Exception:  # noqa: BLE001 - an invalid URL is reported when sending
        host = "(invalid URL)"
    return f"webhook ({channel.format}) to {host}"


def channel_secrets(channels: Sequence[EmailAlert | WebhookAlert]) -> Secrets:
    """The channels' secrets, to hide while delivering: SMTP passwords, webhook URLs and the pieces
    of a webhook URL that are credentials themselves (its path, query and user info)."""
    secrets = Secrets()
    for channel in channels:
        if isinstance(channel, EmailAlert):
            secrets.add(channel.smtp.password)
        elif channel.url:
            secrets.add(channel.url)
            for piece in _url_pieces(channel.url):
                secrets.add(piece)
    return secrets


def _url_pieces(url_: str) -> list[str]:
    """As httpx reads the URL (decoded), which is how an error about it may quote them."""
    try:
        url = httpx.URL(url_)
    except Exception:  # noqa: BLE001 - the whole URL is already redacted
        return []
    pieces = [url.path, url.path.lstrip("/")] if len(url.path) > 1 else []
    if url.query:
        pieces.append(url.query.decode(errors="replace"))
    if url.userinfo:
        pieces.append(url.userinfo.decode(errors="replace"))
    return pieces


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
        safe_log(log, "warning", f"alert to {description}: some recipients were refused: {listed}")


def _post_webhook(channel: WebhookAlert, payload: dict[str, Any]) -> None:
    url = httpx.URL(channel.url)
    if url.scheme not in ("http", "https"):
        raise ValueError(f"the webhook URL must start with https:// (it starts with {url.scheme or 'nothing'}://)")
    response = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT, headers={"User-Agent": f"Headwater/{__version__}"})
    response.raise_for_status()


def deliver(channel: EmailAlert | WebhookAlert, facts: AlertFacts, body: str, log: Log, secrets: Secrets) -> Delivery:
    """Send one alert to one channel, retrying transient failures; never raises."""
    with hiding(secrets):  # what is logged or described meanwhile, httpx's request lines included
        return _deliver(channel, facts, body, log)


def _deliver(channel: EmailAlert | WebhookAlert, facts: AlertFacts, body: str, log: Log) -> Delivery:
    description = describe_channel(channel)
    attempts = 0

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        reason = redact(describe_error(exc)) if exc else "unknown error"
        safe_log(log, "warning", f"alert to {description}: attempt {state.attempt_number} failed ({reason}); trying again in {wait:.1f} s")

    try:
        send: Callable[[], None]
        if isinstance(channel, EmailAlert):
            send = partial(_send_email, channel, email_message(channel, facts, body), log, description)
        else:
            send = partial(_post_webhook, channel, payload(channel, facts))

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
    except Exception as exc:  # noqa: BLE001 - a channel failing must never fail the run
        reason = redact(describe_error(exc))
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        safe_log(log, "error", f"alert to {description} failed{tried}: {reason}")
        return Delivery(description, ok=False, attempts=attempts, error=reason)
    safe_log(log, "info", f"{facts.event} alert for run {facts.run_id} sent: {description}")
    return Delivery(description, ok=True, attempts=attempts)
