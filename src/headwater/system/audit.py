"""The audit log: who did what, when, in which organisation.

Recorded: logins and failed logins, exports, run triggers, and changes to users, roles and secrets.
`record` writes one entry in a transaction of its own; `add` puts one into the caller's session, so a
change and its entry commit together (the secret store and the accounts service do this: no secret
or account changes unaudited).

``detail`` is a small JSON object for context (a role, an export's format, a run's pipeline). It is
passed through `headwater.redact` before it is stored, but callers must never put a secret in it in
the first place: the audit log says *that* a secret changed, never to what.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from headwater.redact import redact
from headwater.system.db import SystemDB
from headwater.system.models import AuditEntry, Organisation

SCHEDULER = "scheduler"
DEFAULT_LIMIT = 100


def cli_actor() -> str:
    """``cli:<os user>``: who ran a command on the server (the OS account is all the CLI knows)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        user = f"uid {os.getuid()}"
    return f"cli:{user}"


@dataclass(frozen=True)
class Event:
    """One entry of the audit log as read back."""

    id: int
    at: dt.datetime
    org: str | None  # the organisation's slug; None for events outside any (a login naming no account)
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    ip: str | None


def add(session: Session, *, org: str | None, actor: str, action: str, target: str, detail: Mapping[str, Any] | None = None, ip: str | None = None) -> AuditEntry:
    """Add an entry to ``session`` (the caller commits). An unknown ``org`` is recorded as none."""
    org_id = session.scalars(select(Organisation.id).where(Organisation.slug == org)).first() if org else None
    entry = AuditEntry(
        at=dt.datetime.now(dt.UTC),
        org_id=org_id,
        actor=_fit(redact(actor), 254),
        action=action,
        target=_fit(redact(target), 255),
        detail=redact(json.dumps(dict(detail), default=str, sort_keys=True)) if detail else None,
        ip=ip,
    )
    session.add(entry)
    return entry


def record(db: SystemDB, *, org: str | None, actor: str, action: str, target: str, detail: Mapping[str, Any] | None = None, ip: str | None = None) -> None:
    """Write one entry now, in its own transaction."""
    with db.session() as session, session.begin():
        add(session, org=org, actor=actor, action=action, target=target, detail=detail, ip=ip)


def query(db: SystemDB, org: str | None, limit: int = DEFAULT_LIMIT, before: int | None = None) -> list[Event]:
    """The newest entries of ``org`` (None: entries outside any organisation), newest first.

    ``before``: only entries with a smaller id, i.e. the next page after the last entry shown. Ids
    rather than times, because many entries can share one timestamp."""
    with db.session() as session:
        statement = select(AuditEntry, Organisation.slug).outerjoin(Organisation, AuditEntry.org_id == Organisation.id)
        if org is None:
            statement = statement.where(AuditEntry.org_id.is_(None))
        else:
            statement = statement.where(Organisation.slug == org)
        if before is not None:
            statement = statement.where(AuditEntry.id < before)
        rows = session.execute(statement.order_by(AuditEntry.id.desc()).limit(max(1, limit))).all()
    return [Event(e.id, e.at, slug, e.actor, e.action, e.target, json.loads(e.detail) if e.detail else {}, e.ip) for e, slug in rows]


def _fit(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"
