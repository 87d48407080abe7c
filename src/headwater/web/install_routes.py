"""Install routes: what belongs to no organisation. Health, the list of one's organisations (an
install with many), and invitation links.

An invitation page asks for a password: a new address gets an account with it; an address that
has one already gives its own password, checked (and rate limited) exactly as a login is. Both
forms are posted without a session, so they carry the login page's double-submit CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from headwater.system.accounts import AccountError, InvitationInvalid, TooManyAttempts
from headwater.web import audit
from headwater.web.auth import anonymous_form, start_session
from headwater.web.tenancy import ORG_PREFIX

router = APIRouter()  # in every app
home_router = APIRouter()  # an install with many organisations: "/" lists the user's


@router.get("/healthz")
def healthz(request: Request) -> dict[str, str | None]:
    """Up or not; a one-project install also says what is published (an install with many says
    nothing about its organisations to anonymous callers)."""
    home = request.app.state.tenancy.home
    if home is None:
        return {"status": "ok"}
    snapshot = home.ctx.warehouse.current_snapshot()
    return {"status": "ok", "published": snapshot.name if snapshot else None}


@home_router.get("/")
def organisations(request: Request) -> Response:
    """Straight to the only organisation; with several, the list to pick from."""
    user = request.app.state.auth.session(request)
    mine = list(user.memberships)
    if len(mine) == 1:
        return RedirectResponse(ORG_PREFIX.format(org=mine[0].slug) + "/", status_code=303)
    page: Response = request.app.state.templates.TemplateResponse(request, "orgs.html", {"memberships": mine}, headers={"Cache-Control": "no-store"})
    return page


@router.get("/invite/{token}")
def invitation_page(request: Request, token: str) -> Response:
    accounts = request.app.state.auth.accounts
    try:
        invitation = accounts.invitation(token)
    except InvitationInvalid as exc:
        return anonymous_form(request, "invite.html", {"invitation": None, "error": exc}, status=404)
    return anonymous_form(request, "invite.html", {"invitation": invitation, "error": None})


@router.post("/invite/{token}")
def accept_invitation(request: Request, token: str, password: Annotated[str, Form(max_length=4096)] = "", confirm: Annotated[str, Form(max_length=4096)] = "") -> Response:
    auth = request.app.state.auth
    try:
        invitation = auth.accounts.invitation(token)
    except InvitationInvalid as exc:
        return anonymous_form(request, "invite.html", {"invitation": None, "error": exc}, status=404)
    if not invitation.has_account and password != confirm:
        error = AccountError("The two passwords differ", fix="Type the same password twice.")
        return anonymous_form(request, "invite.html", {"invitation": invitation, "error": error}, status=400)
    try:
        new = auth.accounts.accept_invitation(token, password, ip=auth.client_ip(request), user_agent=request.headers.get("user-agent"))
    except TooManyAttempts as exc:
        audit.login_failed(request, invitation.email, "rate limited")
        return anonymous_form(request, "invite.html", {"invitation": invitation, "error": exc}, status=429, headers={"Retry-After": str(exc.retry_after_seconds)})
    except AccountError as exc:
        if invitation.has_account:
            audit.login_failed(request, invitation.email, "wrong password on an invitation")
        return anonymous_form(request, "invite.html", {"invitation": invitation, "error": exc}, status=400 if not invitation.has_account else 401)
    audit.logged_in(request, new.user)
    target = (ORG_PREFIX.format(org=invitation.org) + "/") if request.app.state.tenancy.multi else "/"
    return start_session(request, new.token, target)
