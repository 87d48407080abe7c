"""The users admin page of an organisation: its members, adding people, changing their role,
disabling or enabling them, inviting.

The rules (an admin changes members of their own organisation only, never their own account, never
reaches into the person's other organisations, brings in an existing account only by invitation)
and the audit entries are the accounts service's (`system/accounts.py`): this module turns forms
into its calls, as `Actor.admin` for the signed-in admin, and its answers into pages. Who may open
these routes is in `auth.ROUTE_RULES` (admin); each acts in `org_context(request)`'s organisation.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from headwater.system.accounts import AccountError, Accounts, Actor, Role, SessionUser
from headwater.system.orgs import OrgError, parse_attributes
from headwater.web import present
from headwater.web.auth import org_context, require
from headwater.web.tenancy import OrgContext

router = APIRouter()

ADMIN = Depends(require(Role.admin))
FLASH = {
    "added": "Added {email}.",
    "role": "Changed the role of {email}.",
    "disabled": "Disabled {email}: they are logged out and cannot log in.",
    "enabled": "Enabled {email}: they can log in again.",
}
BLANK_FORM = {"email": "", "role": "viewer", "attributes": ""}


def _accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.auth.accounts
    return accounts


def _actor(request: Request, admin: SessionUser, org: OrgContext) -> Actor:
    """The signed-in admin, acting in this organisation from this address (as the audit log names them)."""
    return Actor.admin(admin.email, admin.user_id, org=org.slug, ip=request.app.state.auth.client_ip(request))


def _users_page(
    request: Request, *, flash: str | None = None, error: Exception | None = None, form: dict[str, str] | None = None, status: int = 200, invitation: dict[str, str] | None = None
) -> Response:
    org = org_context(request)
    users = _accounts(request).list_users(org=org.slug)
    context = {"users": users, "roles": list(Role), "flash": flash, "error": error, "form": form or BLANK_FORM, "invitation": invitation}
    return _page(request, "users.html", status=status, **context)


def _attributes(text: str) -> dict[str, list[str]]:
    """Row-level attributes typed in a form, one NAME=VALUE per line or comma."""
    return parse_attributes(item.strip() for item in re.split(r"[,\n]", text) if item.strip())


@router.get("/admin/users")
def users_page(request: Request, done: str | None = None, email: str | None = None) -> Response:
    flash = FLASH[done].format(email=email or "the account") if done in FLASH else None
    return _users_page(request, flash=flash)


@router.post("/admin/users")
def add_user(
    request: Request,
    admin: Annotated[SessionUser, ADMIN],
    email: Annotated[str, Form(max_length=1000)] = "",
    role: Annotated[str, Form(max_length=32)] = "viewer",
    password: Annotated[str, Form(max_length=4096)] = "",
    attributes: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    org = org_context(request)
    try:
        account = _accounts(request).create_user(email, password, role, org=org.slug, attributes=_attributes(attributes), actor=_actor(request, admin, org))
    except (AccountError, OrgError) as exc:
        return _users_page(request, error=exc, form={"email": email, "role": role, "attributes": attributes}, status=400)
    return _done(org, "added", account.email)


@router.post("/admin/users/{user_id:int}/role")
def change_role(request: Request, user_id: int, admin: Annotated[SessionUser, ADMIN], role: Annotated[str, Form(max_length=32)] = "") -> Response:
    org = org_context(request)
    accounts = _accounts(request)
    try:
        email = accounts.member(user_id, org=org.slug).email
        accounts.set_role(email, role, org=org.slug, actor=_actor(request, admin, org))
    except AccountError as exc:
        return _users_page(request, error=exc, status=400)
    return _done(org, "role", email)


@router.post("/admin/users/{user_id:int}/disabled")
def set_disabled(request: Request, user_id: int, admin: Annotated[SessionUser, ADMIN], disabled: Annotated[str, Form(max_length=8)] = "1") -> Response:
    org = org_context(request)
    accounts = _accounts(request)
    off = disabled.strip().lower() in ("1", "true", "yes", "on")
    try:
        email = accounts.member(user_id, org=org.slug).email
        accounts.set_disabled(email, off, actor=_actor(request, admin, org))
    except AccountError as exc:
        return _users_page(request, error=exc, status=400)
    return _done(org, "disabled" if off else "enabled", email)


@router.post("/admin/invitations")
def invite(
    request: Request,
    admin: Annotated[SessionUser, ADMIN],
    email: Annotated[str, Form(max_length=1000)] = "",
    role: Annotated[str, Form(max_length=32)] = "viewer",
    attributes: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """A one-time link to join this organisation, shown once on the page (it is not stored)."""
    org = org_context(request)
    try:
        token = _accounts(request).invite(email, role, org=org.slug, attributes=_attributes(attributes), actor=_actor(request, admin, org))
    except (AccountError, OrgError) as exc:
        return _users_page(request, error=exc, form={"email": email, "role": role, "attributes": attributes}, status=400)
    invited = _accounts(request).invitation(token)
    link = (org.project.config.web.base_url or str(request.base_url)).rstrip("/") + f"/invite/{token}"
    return _users_page(request, invitation={"email": invited.email, "role": str(invited.role), "link": link, "expires": present.utc(invited.expires_at)})


def _done(org: OrgContext, what: str, email: str) -> Response:
    return RedirectResponse(org.url("/admin/users?" + urlencode({"done": what, "email": email})), status_code=303)


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    page: Response = request.app.state.templates.TemplateResponse(request, template, context, status_code=status, headers={"Cache-Control": "no-store"})
    return page
