"""The web app's side of the audit log: one entry per login, failed login, export and run started
through the web, and the organisation's `/admin/audit` page. (Changes to users, roles and
invitations are audited by the accounts service itself, in the change's transaction.)

Entries go through `headwater.system.audit` (who, what, when, which organisation, from where). A
login belongs to no organisation, so it is recorded once for each organisation the person is a
member of: each organisation's admins see their own members' logins, and nothing of anyone else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from headwater.system import audit as audit_log
from headwater.system.accounts import InvalidEmail, SessionUser, normalise_email

PAGE = 100

router = APIRouter()


def record(request: Request, action: str, target: str, detail: Mapping[str, Any] | None = None, *, org: str | None = None, actor: str | None = None) -> None:
    """One entry by the request's signed-in user (or ``actor``), in the request's organisation (or ``org``)."""
    auth = request.app.state.auth
    if actor is None:
        user = auth.user(request)
        actor = user.email if user else "anonymous"
    where = org if org is not None else getattr(getattr(request.state, "hw_org", None), "slug", None)
    audit_log.record(auth.tenancy.system_db(), org=where, actor=actor, action=action, target=target, detail=detail, ip=auth.client_ip(request))


def logged_in(request: Request, user: SessionUser) -> None:
    auth = request.app.state.auth
    orgs: list[str | None] = [m.slug for m in user.memberships] or [None]  # None: a login outside any organisation
    for org in orgs:
        audit_log.record(auth.tenancy.system_db(), org=org, actor=user.email, action="login", target=user.email, ip=auth.client_ip(request))


def login_failed(request: Request, email: str, reason: str) -> None:
    """A failed login: in each organisation of the account it names (none when it names no account)."""
    auth = request.app.state.auth
    try:
        key = normalise_email(email)
        orgs: list[str | None] = list(auth.accounts.organisations_of(key)) if auth.accounts.exists(key) else []
    except InvalidEmail:
        key, orgs = email.strip()[:254], []
    for org in orgs or [None]:
        audit_log.record(auth.tenancy.system_db(), org=org, actor=key, action="login_failed", target=key, detail={"reason": reason}, ip=auth.client_ip(request))


@router.get("/admin/audit")
def audit_page(request: Request, before: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """The organisation's audit log, newest first, a page at a time."""
    org = request.state.hw_org
    events = audit_log.query(request.app.state.auth.tenancy.system_db(), org.slug, PAGE + 1, before)
    more = len(events) > PAGE
    events = events[:PAGE]
    older = org.url(f"/admin/audit?before={events[-1].id}") if more and events else None
    page: Response = request.app.state.templates.TemplateResponse(request, "audit.html", {"events": events, "older": older, "first_page": before is None}, headers={"Cache-Control": "no-store"})
    return page
