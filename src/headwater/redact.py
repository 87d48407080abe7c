"""Keep secrets out of everything that is written down or shown: logs, run records, error messages,
alerts and pages.

Two mechanisms, applied together by `redact`:

- **A registry of secret values** (process-wide). Registered: every value resolved from
  ``${secret:NAME}``, every value the secret store encrypts or decrypts, every ``${ENV}`` value whose
  variable *or* YAML key is named like a secret (`is_secret_name`: password, passwd, pwd, pass,
  secret, token, api_key, private_key, credentials, dsn, auth, webhook...; for variables also a
  word ``KEY``, as in ``STRIPE_KEY``, which for a setting would more often be ``primary_key``), every
  value under such a YAML key even when written inline, and every alert channel's webhook URL (the
  URL is the credential). A
  registered value is replaced wherever it appears, also URL-encoded, JSON-escaped or HTML-escaped.
  Values shorter than `MIN_LENGTH` are not registered: a three-letter "secret" would blank out
  ordinary words everywhere (they are still caught by the patterns below).
- **Patterns for secrets nobody registered:** the password of a URL
  (``postgresql://u:***@h/db``) and ``password=...``-style pairs (libpq strings, query strings).

Secrets that are not the whole process's business (an alert channel's, when its project was built
in code rather than loaded from headwater.yml) go in a `Secrets` of their own, which `redact`
applies inside a `with hiding(secrets):` block: the same forms, the same replacement, for one
thread's work.

The registry is process-wide because secrets reach text from anywhere (a driver's error message, a
dbt event, a third-party logger) and the hook points must stay one call each. With several
organisations in one process it holds all of their secrets; that is safe, since redacting only ever
removes text.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

REDACTED = "***"
MIN_LENGTH = 4

# scheme://user:password@host — the password runs to the last @ before a blank (an unencoded @ in a
# password must not leave its tail visible); a URL without user:password is left alone.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^\s]*)(?P<at>@)")
# password=... in a query string or a libpq key=value string.
_KEY_VALUE = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|secret|token|api_?key|access_?key|sslpassword|client_secret)\s*=\s*)(?P<secret>'[^']*'|[^&\s;,]+)",
    re.IGNORECASE,
)
# Names of variables and settings that hold secrets: contained anywhere, or as a whole word.
_SECRET_PARTS = ("password", "passwd", "secret", "token", "webhook", "credential", "apikey", "api_key", "private_key", "access_key")
_SECRET_WORDS = {"pass", "pwd", "dsn", "auth"}

_lock = threading.Lock()  # guards `_logging_installed`
_logging_installed = False


def is_secret_name(name: str, *, variable: bool = False) -> bool:
    """Whether a setting (or, with ``variable``, an environment variable) called ``name`` holds a
    secret: SMTP_PASSWORD, PGPASS, api_key, SLACK_WEBHOOK_URL, DATABASE_DSN — not DB_HOST or PORT."""
    lowered = name.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    if variable and "key" in words:
        return True
    return any(part in lowered for part in _SECRET_PARTS) or bool(words & _SECRET_WORDS) or lowered.endswith("pass")


class Secrets:
    """A set of secret values, each with every form it may be written in, replaced together.

    The process-wide registry (`register`) is one. A caller holding secrets it does not hand to the
    whole process (an alert channel's password and webhook URL, read from a project that was not
    loaded through headwater.yml) keeps a `Secrets` of its own and makes `redact` apply it while it
    works, with `hiding`."""

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None  # the values, longest first; rebuilt on change
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Treat ``value`` as a secret from now on (values shorter than `MIN_LENGTH` are ignored)."""
        if not value or len(value) < MIN_LENGTH:
            return
        forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1], html.escape(value), _jinja_escape(value)}
        forms |= _parts(value)
        with self._lock:
            forms = {f for f in forms if len(f) >= MIN_LENGTH} - self._values
            if not forms:
                return
            self._values.update(forms)
            self._pattern = re.compile("|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True)))

    def replace(self, text: str) -> str:
        """``text`` with every form of every value replaced by ***."""
        pattern = self._pattern
        while pattern is not None and pattern.search(text):  # again: "***" next to a secret's tail can form it anew ("****")
            text = pattern.sub(REDACTED, text)
        return text

    def copy(self) -> Secrets:
        twin = Secrets()
        with self._lock:
            twin._values, twin._pattern = set(self._values), self._pattern
        return twin

    def __bool__(self) -> bool:
        return bool(self._values)


_registry = Secrets()  # the process-wide one
# Secrets applied by `redact` in this thread (or task) only, on top of the registry: see `hiding`.
_hidden: ContextVar[tuple[Secrets, ...]] = ContextVar("headwater_hidden_secrets", default=())


def register(value: str | None) -> None:
    """Treat ``value`` as a secret from now on, in this process."""
    _registry.add(value)


@contextmanager
def hiding(secrets: Secrets) -> Iterator[None]:
    """Within the block, in this thread, `redact` (so also every log record made, once
    `install_logging` ran) replaces ``secrets`` too. Threads started inside do not inherit it."""
    token = _hidden.set((*_hidden.get(), secrets))
    try:
        yield
    finally:
        _hidden.reset(token)


def _jinja_escape(value: str) -> str:
    """As Jinja's autoescape (markupsafe) writes it: quotes as numeric references."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;").replace("'", "&#39;")


def _parts(value: str) -> set[str]:
    """Pieces of a secret that are secrets themselves: a URL's password, an http(s) URL's path and
    query (a webhook's path is its token; a database URL's path is only the database's name), and the
    secret-named fields of a JSON key (a service account's private_key)."""
    found: set[str] = set()
    stripped = value.strip()
    if "://" in stripped and not any(c.isspace() for c in stripped):
        try:
            url = urlsplit(stripped)
        except ValueError:
            return found
        found |= {url.password} if url.password else set()
        if url.scheme in ("http", "https"):
            found |= {p for p in (url.query, url.path, url.path.lstrip("/")) if len(p) > 1}
    elif stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            return found
        if isinstance(data, dict):
            found |= {str(v) for k, v in data.items() if isinstance(v, str) and is_secret_name(str(k))}
    return found


def redact(text: str | None) -> str:
    """``text`` with every registered secret, URL password and ``password=`` value replaced by ***."""
    if not text:
        return ""
    text = _registry.replace(text)
    for secrets in _hidden.get():
        text = secrets.replace(text)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED + m["at"], text)
    return _KEY_VALUE.sub(lambda m: m["head"] + REDACTED, text)


def redact_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """A row about to be stored, with every text value redacted."""
    return {key: redact(value) if isinstance(value, str) else value for key, value in record.items()}


# --- Python logging ------------------------------------------------------------------------------


def install_logging() -> None:
    """Redact every log record of this process as it is created.

    A filter on a logger would miss records logged by its children, and one on a handler would miss
    handlers configured later (uvicorn's, dbt's file log); the record factory sees every record once,
    before any handler formats it. Idempotent."""
    global _logging_installed  # noqa: PLW0603 - logging's record factory is process-wide: installed once per process
    with _lock:
        if _logging_installed:
            return
        _logging_installed = True
        make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redact_record(make(*args, **kwargs))

    logging.setLogRecordFactory(factory)


_FORMATTER = logging.Formatter()


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record is the logger's problem; leave it as it is
        return record
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:  # formatters reuse exc_text: the traceback is redacted once, here
        record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record
