"""Who may open what: login and logout, the session cookie, CSRF, and every route's minimum role.

Every request to a route passes `guard` (an app-wide dependency, see `app.py`), which looks the
route up in `ROUTE_RULES` and finds the role it may declare itself with `Depends(require(...))`
(both apply, so the stricter one counts):

- public routes (`/login`, `/healthz`, static files) are open to anyone;
- an anonymous request elsewhere is sent to `/login?next=<path>` (pages) or gets 401 JSON (`/api/`);
- a signed-in user whose role is too low gets 403 (a page, or JSON under `/api/`);
- every POST/PUT/PATCH/DELETE must carry the session's CSRF token (form field `csrf_token` or header
  `X-CSRF-Token`), else 403. The login form, which has no session yet, is protected by a
  double-submit cookie instead, so another site cannot log a browser in to an account of its choosing.

A route without a rule is refused to everyone but admins (and `tests/test_auth.py` fails), so a new
route can never silently be public.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import jinja2
from argon2 import PasswordHasher
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.routing import Mount

from headwater.errors import HeadwaterError
from headwater.system.accounts import AccountDisabled, Accounts, LoginFailed, Policy, Role, SessionUser, TooManyAttempts, now_utc, tokens_match
from headwater.web.context import WebContext
from headwater.web.errors import error_response

logger = logging.getLogger("headwater.web.auth")

SESSION_COOKIE = "headwater_session"
LOGIN_CSRF_COOKIE = "headwater_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
_UNKNOWN = object()


@dataclass(frozen=True)
class Rule:
    """Who may use a route: anyone (public), anyone signed in (role None), or a minimum role."""

    role: Role | None = None
    public: bool = False

    def __str__(self) -> str:
        return "public" if self.public else str(self.role or "signed in")


PUBLIC = Rule(public=True)
SIGNED_IN = Rule()
VIEWER, ANALYST, ADMIN = Rule(Role.viewer), Rule(Role.analyst), Rule(Role.admin)

# Every route of the app, "METHOD path" as declared, and who may use it. tests/test_auth.py checks
# that this covers the app's route table and requests every route as every role.
ROUTE_RULES: dict[str, Rule] = {
    "GET /": VIEWER,
    "GET /dashboards/{name}": VIEWER,
    "GET /api/dashboards/{name}/charts/{index:int}": VIEWER,
    "GET /dashboards/{name}/charts/{index:int}.csv": VIEWER,
    "GET /tables/{table}.csv": VIEWER,
    "GET /runs": ANALYST,
    "GET /runs/{run_id:int}": ANALYST,
    "GET /api/runs/{run_id:int}/log": ANALYST,
    "GET /sources": ANALYST,
    "GET /sources/{name}": ANALYST,
    "GET /pipelines": ANALYST,
    "GET /api/pipelines": ANALYST,
    "POST /pipelines/{name}/run": ANALYST,
    "GET /admin/users": ADMIN,
    "POST /admin/users": ADMIN,
    "POST /admin/users/{user_id:int}/role": ADMIN,
    "POST /admin/users/{user_id:int}/disabled": ADMIN,
    "GET /healthz": PUBLIC,
    "GET /static/plotly.min.js": PUBLIC,
    "GET /login": PUBLIC,
    "POST /login": PUBLIC,
    "POST /logout": SIGNED_IN,
}
PUBLIC_MOUNTS = {"/static"}  # static files: GET only, nothing private in them
UNRULED = ADMIN  # what a route without a rule gets at run time (the tests fail on it)


# --- errors -------------------------------------------------------------------------------------


class LoginRequired(HeadwaterError):
    """Anonymous request to a route that needs an account: a redirect (pages) or 401 (API)."""

    def __init__(self) -> None:
        super().__init__("You need to log in", why="this needs a Headwater account", fix="Log in at /login, or send the session cookie with the request.")


class Forbidden(HeadwaterError):
    pass


class CsrfFailed(Forbidden):
    def __init__(self, *, login: bool = False) -> None:
        if login:
            super().__init__("The login form has expired", why="the form's security token did not match this browser's (or cookies are blocked)", fix="Reload the login page and log in again; this site needs cookies.")
        else:
            super().__init__(
                "This request was refused: it did not come from a Headwater page",
                why=f"changes need the session's security token (form field '{CSRF_FIELD}' or header '{CSRF_HEADER}'), and it was missing or wrong",
                fix="Reload the page and try again.",
            )


# --- settings and state -------------------------------------------------------------------------


@dataclass
class AuthSettings:
    """How the web app authenticates. ``clock`` and ``hasher`` are there for tests."""

    trust_proxy_headers: bool = False  # honour X-Forwarded-Proto / -For: only behind a proxy that sets them
    policy: Policy = field(default_factory=Policy)
    clock: Callable[[], Any] = now_utc
    hasher: PasswordHasher | None = None

    @classmethod
    def from_env(cls) -> AuthSettings:
        trust = os.environ.get("HEADWATER_TRUST_PROXY_HEADERS", "").strip().lower() in ("1", "true", "yes", "on")
        return cls(trust_proxy_headers=trust)


class WebAuth:
    """The app's accounts service (opened on first use) and how requests map to users and rules."""

    def __init__(self, app: FastAPI, ctx: WebContext, settings: AuthSettings) -> None:
        self.app = app
        self.ctx = ctx
        self.settings = settings
        self._accounts: Accounts | None = None
        self._lock = threading.Lock()
        self._rules: dict[tuple[int, str], Rule] = {}

    @property
    def accounts(self) -> Accounts:
        db = self.ctx.system_db()  # reopened after the app restarts (lifespan)
        with self._lock:
            if self._accounts is None or self._accounts.db is not db:
                s = self.settings
                self._accounts = Accounts(db, policy=s.policy, clock=lambda: s.clock(), hasher=s.hasher)
            return self._accounts

    def user(self, request: Request) -> SessionUser | None:
        """The signed-in user of this request (looked up once per request)."""
        user = getattr(request.state, "hw_user", _UNKNOWN)
        if user is _UNKNOWN:
            user = request.state.hw_user = self.accounts.session_user(request.cookies.get(SESSION_COOKIE))
        return user

    def is_https(self, request: Request) -> bool:
        if request.url.scheme == "https":
            return True
        if self.settings.trust_proxy_headers:
            return request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() == "https"
        return False

    def client_ip(self, request: Request) -> str:
        if self.settings.trust_proxy_headers and (forwarded := request.headers.get("x-forwarded-for")):
            return forwarded.split(",")[-1].strip()[:45] or "unknown"  # the address our proxy saw
        return request.client.host if request.client else "unknown"

    def rule_for(self, request: Request) -> Rule:
        route = request.scope.get("route")
        method = "GET" if request.method == "HEAD" else request.method
        key = (id(route), method)
        if key not in self._rules:
            self._rules = {(id(info.route), info.method): info.rule for info in route_table(self.app) if info.rule is not None}
        if key not in self._rules:
            logger.error("no permission rule for %s %s: only admins may use it", method, getattr(route, "path", request.url.path))
            return UNRULED
        return self._rules[key]

    def set_cookie(self, request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax", secure=self.is_https(request))

    def delete_cookie(self, request: Request, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=self.is_https(request))


def _auth(request: Request) -> WebAuth:
    return request.app.state.auth


# --- the route table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    route: Any
    rule: Rule | None  # None: no rule (refused to all but admins, and a test failure)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


def route_table(app: FastAPI) -> list[RouteInfo]:
    """Every (method, path) the app serves, with its rule. Mounts count as one GET route."""
    table = []
    for prefix, route in _walk(app.routes, ""):
        if isinstance(route, APIRoute):
            declared = _declared_rule(route.dependant)
            for method in sorted(route.methods):
                path = prefix + route.path
                table.append(RouteInfo(method, path, route, _stricter(ROUTE_RULES.get(f"{method} {path}"), declared)))
        elif isinstance(route, Mount):
            table.append(RouteInfo("GET", prefix + route.path, route, PUBLIC if prefix + route.path in PUBLIC_MOUNTS else None))
        else:
            table.append(RouteInfo("?", prefix + str(getattr(route, "path", route)), route, None))
    return table


def _walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
        if included is not None:
            yield from _walk(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        else:
            yield prefix, route


def _stricter(a: Rule | None, b: Rule | None) -> Rule | None:
    """Both the table's rule and the route's own require() apply, so the stricter one is the route's."""
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda rule: -1 if rule.public else (rule.role.rank if rule.role else -0.5))


def _declared_rule(dependant: Any) -> Rule | None:
    for dep in getattr(dependant, "dependencies", []):
        rule = getattr(dep.call, "headwater_rule", None) or _declared_rule(dep)
        if rule is not None:
            return rule
    return None


# --- dependencies -------------------------------------------------------------------------------


async def _submitted_csrf(request: Request) -> str | None:
    """The CSRF token a state-changing request carries (header or form field)."""
    if request.method in SAFE_METHODS:
        return None
    if header := request.headers.get(CSRF_HEADER):
        return header
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def guard(request: Request, submitted: Annotated[str | None, Depends(_submitted_csrf)]) -> None:
    """Runs before every route: enforces the route's rule and CSRF (see the module's docstring)."""
    auth = _auth(request)
    rule = auth.rule_for(request)
    unsafe = request.method not in SAFE_METHODS
    if rule.public:
        if unsafe and not tokens_match(submitted, request.cookies.get(LOGIN_CSRF_COOKIE)):
            raise CsrfFailed(login=True)
        return
    user = auth.user(request)
    if user is None:
        raise LoginRequired()
    if rule.role is not None and not user.can(rule.role):
        raise _forbidden(user, rule.role)
    if unsafe and not tokens_match(submitted, user.csrf_token):
        logger.warning("CSRF token missing or wrong: %s %s by %s", request.method, request.url.path, user.email)
        raise CsrfFailed()


def require(role: Role | str | None = None) -> Callable[[Request], SessionUser]:
    """A dependency giving the signed-in user, who must have at least ``role`` (None: any signed-in user).

    ``user: Annotated[SessionUser, Depends(require(Role.analyst))]`` also declares the route's rule,
    so it needs no entry in ROUTE_RULES."""
    needed = Role(role) if role is not None else None

    def current_user(request: Request) -> SessionUser:
        user = _auth(request).user(request)
        if user is None:
            raise LoginRequired()
        if needed is not None and not user.can(needed):
            raise _forbidden(user, needed)
        return user

    current_user.headwater_rule = Rule(needed)  # type: ignore[attr-defined]
    return current_user


def _forbidden(user: SessionUser, needed: Role) -> Forbidden:
    has = f"the {user.role} role" if user.role else "no role in this organisation"
    return Forbidden(
        "You do not have access to this",
        why=f"it needs the {needed} role (or a higher one), and {user.email} has {has}",
        fix=f"Ask an admin to change your role: headwater user set-role {user.email} {needed}",
    )


# --- login and logout ---------------------------------------------------------------------------

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site (no open redirect)."""
    if not target or len(target) > 2000 or any(c in target for c in "\\\r\n\t\x00") or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return target


@router.get("/login")
def login_page(request: Request, next_: Annotated[str, Query(alias="next")] = "/", logged_out: bool = False) -> Response:
    target = safe_next(next_)
    if _auth(request).user(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_form(request, target, message="You have logged out." if logged_out else None)


@router.post("/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=1000)] = "",
    password: Annotated[str, Form(max_length=4096)] = "",
    next_: Annotated[str, Form(alias="next", max_length=2000)] = "/",
) -> Response:
    auth = _auth(request)
    target = safe_next(next_)
    try:
        new = auth.accounts.login(email, password, ip=auth.client_ip(request), user_agent=request.headers.get("user-agent"))
    except TooManyAttempts as exc:
        return _login_form(request, target, email=email, error=exc, status=429, headers={"Retry-After": str(exc.retry_after_seconds)})
    except LoginFailed as exc:
        return _login_form(request, target, email=email, error=exc, status=401)
    except AccountDisabled as exc:
        return _login_form(request, target, email=email, error=exc, status=403)
    auth.accounts.logout(request.cookies.get(SESSION_COOKIE))  # a session this browser had before ends
    response = RedirectResponse(target, status_code=303)
    auth.set_cookie(request, response, SESSION_COOKIE, new.token, int(auth.settings.policy.absolute_timeout.total_seconds()))
    auth.delete_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    auth = _auth(request)
    auth.accounts.logout(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login?logged_out=1", status_code=303)
    auth.delete_cookie(request, response, SESSION_COOKIE)
    return response


def _login_form(request: Request, target: str, *, email: str = "", error: HeadwaterError | None = None, message: str | None = None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    auth = _auth(request)
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not TOKEN.fullmatch(token):
        token = secrets.token_urlsafe(32)
    context = {"next": target, "email": email, "error": error, "message": message, "login_csrf": token}
    response = request.app.state.templates.TemplateResponse(request, "login.html", context, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})
    auth.set_cookie(request, response, LOGIN_CSRF_COOKIE, token, None)
    return response


# --- wiring -------------------------------------------------------------------------------------


def login_redirect(request: Request) -> str:
    if request.method not in ("GET", "HEAD"):
        return "/login"
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login" if path == "/" else f"/login?next={quote(path, safe='')}"


async def _login_required(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        assert isinstance(exc, HeadwaterError)
        return error_response(request, 401, exc.what, exc.why, exc.fix)
    return RedirectResponse(login_redirect(request), status_code=303)


async def _forbidden_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HeadwaterError)
    return error_response(request, 403, exc.what, exc.why, exc.fix)


@jinja2.pass_context
def csrf_field(context: Any) -> Markup:
    """``{{ csrf_field() }}`` inside a form: the hidden input with this session's CSRF token."""
    request = context.get("request")
    user = _template_user(request) if request is not None else None
    if user is None:
        return Markup("")
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(user.csrf_token))


def _template_user(request: Request) -> SessionUser | None:
    try:
        return _auth(request).user(request)
    except Exception:  # noqa: BLE001 - an error page must render even when the system database cannot be read
        logger.debug("no user for the page: the system database could not be read", exc_info=True)
        return None


def install(app: FastAPI, ctx: WebContext, templates: Jinja2Templates, settings: AuthSettings | None = None) -> None:
    """Wire accounts into the app. The app must be created with ``dependencies=[Depends(guard)]``."""
    app.state.auth = WebAuth(app, ctx, settings or AuthSettings.from_env())
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden_response)
    templates.env.globals["csrf_field"] = csrf_field
    templates.context_processors.append(lambda request: {"current_user": _template_user(request)})
    app.include_router(router)
