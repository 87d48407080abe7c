"""Who may open what: login and logout, the session cookie, CSRF, the organisation of a request,
and every route's minimum role.

Routes are of two kinds. *Organisation routes* (dashboards, downloads, runs, sources, pipelines,
users, audit: the routers in `ORG_ROUTERS`) are served for one organisation: at unprefixed URLs in
a one-project install, under ``/o/<slug>/`` in an install with many. *Install routes* (login,
logout, invitations, health, static files, and the organisation list of a multi-organisation
install) belong to no organisation.

Every request to a route passes `guard` (an app-wide dependency, see `app.py`), which looks the
route up in `ROUTE_RULES` (organisation routes, by their path within the organisation) or
`INSTALL_ROUTE_RULES`, and finds the role it may declare itself with `Depends(require(...))` (both
apply, so the stricter one counts):

- public routes (`/login`, `/healthz`, static files, invitation links) are open to anyone;
- an anonymous request elsewhere is sent to `/login?next=<path>` (pages) or gets 401 JSON (`/api/`),
  whether or not the organisation in the URL exists;
- a signed-in user asking for an organisation they are not a member of gets 404, exactly as for an
  organisation that does not exist: nobody learns which organisations an install hosts;
- a member whose role is too low gets 403 (a page, or JSON under `/api/`);
- every POST/PUT/PATCH/DELETE must carry the session's CSRF token (form field `csrf_token` or header
  `X-CSRF-Token`), else 403. The login and invitation forms, which have no session yet, are
  protected by a double-submit cookie instead, so another site cannot log a browser in to an
  account of its choosing.

The organisation, the member's role there and their row scope are resolved once, here, into an
`OrgContext` that routes read with `org_context(request)`.

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

from headwater.dashboards.scope import RowScope
from headwater.errors import HeadwaterError
from headwater.system.accounts import AccountDisabled, Accounts, LoginFailed, Policy, Role, SessionUser, TooManyAttempts, now_utc, tokens_match
from headwater.system.orgs import DEFAULT_ORG
from headwater.web import audit
from headwater.web.errors import PageNotFound, error_response, is_api
from headwater.web.tenancy import ORG_PREFIX, OrgContext, Tenancy

logger = logging.getLogger("headwater.web.auth")

SESSION_COOKIE = "headwater_session"
LOGIN_CSRF_COOKIE = "headwater_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")


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

# Every organisation route, "METHOD path" within the organisation, and who may use it (the role is
# the member's in the organisation of the request). tests/test_auth.py checks that this covers the
# app's route table and requests every route as every role of two organisations.
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
    "POST /admin/invitations": ADMIN,
    "GET /admin/audit": ADMIN,
}
# Install routes, "METHOD path" as served. In a one-project install they see the user as a member
# of its organisation; in an install with many, as a member of none.
INSTALL_ROUTE_RULES: dict[str, Rule] = {
    "GET /": SIGNED_IN,  # an install with many organisations: the list of yours
    "GET /healthz": PUBLIC,
    "GET /static/plotly.min.js": PUBLIC,
    "GET /login": PUBLIC,
    "POST /login": PUBLIC,
    "POST /logout": SIGNED_IN,
    "GET /invite/{token}": PUBLIC,
    "POST /invite/{token}": PUBLIC,
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
    """The app's accounts service (opened on first use) and how requests map to users, organisations and rules."""

    def __init__(self, app: FastAPI, tenancy: Tenancy, settings: AuthSettings) -> None:
        self.app = app
        self.tenancy = tenancy
        self.settings = settings
        self._accounts: Accounts | None = None
        self._lock = threading.Lock()
        self._rules: dict[tuple[int, str], RouteInfo] = {}

    @property
    def accounts(self) -> Accounts:
        db = self.tenancy.system_db()  # reopened after the app restarts (lifespan)
        with self._lock:
            if self._accounts is None or self._accounts.db is not db:
                s = self.settings
                self._accounts = Accounts(db, policy=s.policy, clock=s.clock, hasher=s.hasher)
            return self._accounts

    def session(self, request: Request) -> SessionUser | None:
        """The signed-in user of this request, as a member of no organisation in particular (looked up once)."""
        if not hasattr(request.state, "hw_session"):
            request.state.hw_session = self.accounts.session_user(request.cookies.get(SESSION_COOKIE), org=None)
        user: SessionUser | None = request.state.hw_session
        return user

    def user(self, request: Request) -> SessionUser | None:
        """The signed-in user as a member of the request's organisation (on install routes: of the
        one-project install's organisation, or of none)."""
        if not hasattr(request.state, "hw_user"):
            session = self.session(request)
            request.state.hw_user = session.in_org(None if self.tenancy.multi else DEFAULT_ORG) if session else None
        user: SessionUser | None = request.state.hw_user
        return user

    def resolve_org(self, request: Request, session: SessionUser) -> OrgContext:
        """The organisation an organisation route is asked for, with the user as its member. Not a
        member (or no such organisation): 404, the same answer either way."""
        tenancy = self.tenancy
        if tenancy.multi:
            slug = str(request.path_params.get("org", ""))
            member = session.in_org(slug)
            site = tenancy.site(slug) if member.role is not None else None
            if site is None:
                raise PageNotFound(request.url.path)
            base = ORG_PREFIX.format(org=slug)
        else:
            site, member, base = tenancy.home, session.in_org(DEFAULT_ORG), ""
        scope = RowScope.for_member(site.project.config.dashboards, member.attributes)  # type: ignore[union-attr]
        org = request.state.hw_org = OrgContext(site, member, scope, base)  # type: ignore[arg-type]
        request.state.hw_user = member
        tenancy.touch(org.site)
        return org

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

    def route_for(self, request: Request) -> RouteInfo:
        route = request.scope.get("route")
        method = "GET" if request.method == "HEAD" else request.method
        key = (id(route), method)
        if key not in self._rules:
            self._rules = {(id(info.route), info.method): info for info in route_table(self.app)}
        info = self._rules.get(key)
        if info is None or info.rule is None:
            logger.error("no permission rule for %s %s: only admins may use it", method, getattr(route, "path", request.url.path))
            return RouteInfo(method, request.url.path, route, UNRULED, org=info.org if info else False)
        return info

    def set_cookie(self, request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax", secure=self.is_https(request))

    def delete_cookie(self, request: Request, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=self.is_https(request))


def _auth(request: Request) -> WebAuth:
    auth: WebAuth = request.app.state.auth
    return auth


# --- the route table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str  # as served, e.g. /o/{org}/dashboards/{name}
    route: Any
    rule: Rule | None  # None: no rule (refused to all but admins, and a test failure)
    org: bool = False  # an organisation route
    local: str = ""  # the path within the organisation (organisation routes)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def rule_key(self) -> str:
        """Its key in ROUTE_RULES (organisation routes) or INSTALL_ROUTE_RULES."""
        return f"{self.method} {self.local if self.org else self.path}"


def route_table(app: FastAPI) -> list[RouteInfo]:
    """Every (method, path) the app serves, with its rule. Mounts count as one GET route."""
    org_routers = getattr(app.state, "org_routers", ())
    table = []
    for prefix, local_prefix, org, route in _walk(app.routes, "", "", False, org_routers):
        if isinstance(route, APIRoute):
            declared = _declared_rule(route.dependant)
            rules = ROUTE_RULES if org else INSTALL_ROUTE_RULES
            for method in sorted(route.methods or ()):  # FastAPI gives every APIRoute its methods (GET by default)
                local = local_prefix + route.path
                key = f"{method} {local if org else prefix + route.path}"
                table.append(RouteInfo(method, prefix + route.path, route, _stricter(rules.get(key), declared), org, local if org else ""))
        elif isinstance(route, Mount):
            table.append(RouteInfo("GET", prefix + route.path, route, PUBLIC if prefix + route.path in PUBLIC_MOUNTS else None))
        else:
            table.append(RouteInfo("?", prefix + str(getattr(route, "path", route)), route, None))
    return table


def _walk(routes: list[Any], prefix: str, local: str, org: bool, org_routers: Any) -> Iterator[tuple[str, str, bool, Any]]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
        if included is not None:
            added = getattr(route.include_context, "prefix", "")
            inside = org or included in org_routers
            yield from _walk(included.routes, prefix + added, local + (added if org else ""), inside, org_routers)
        else:
            yield prefix, local, org, route


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
    """Runs before every route: resolves the organisation, enforces the route's rule and CSRF (see
    the module's docstring)."""
    auth = _auth(request)
    info = auth.route_for(request)
    rule = info.rule or UNRULED
    unsafe = request.method not in SAFE_METHODS
    if rule.public:
        if unsafe and not tokens_match(submitted, request.cookies.get(LOGIN_CSRF_COOKIE)):
            raise CsrfFailed(login=True)
        return
    session = auth.session(request)
    if session is None:
        raise LoginRequired()
    user = auth.resolve_org(request, session).member if info.org else auth.user(request)
    if user is None:  # not while there is a session (`Auth.user`); if so, no one is signed in
        raise LoginRequired()
    if rule.role is not None and not user.can(rule.role):
        raise _forbidden(auth, user, rule.role)
    if unsafe and not tokens_match(submitted, user.csrf_token):
        logger.warning("CSRF token missing or wrong: %s %s by %s", request.method, request.url.path, user.email)
        raise CsrfFailed()


def org_context(request: Request) -> OrgContext:
    """The organisation of an organisation route's request (set by `guard`)."""
    org: OrgContext = request.state.hw_org
    return org


def require(role: Role | str | None = None) -> Callable[[Request], SessionUser]:
    """A dependency giving the signed-in user, who must have at least ``role`` (None: any signed-in user).

    ``user: Annotated[SessionUser, Depends(require(Role.analyst))]`` also declares the route's rule,
    so it needs no entry in ROUTE_RULES."""
    needed = Role(role) if role is not None else None

    def current_user(request: Request) -> SessionUser:
        auth = _auth(request)
        user = auth.user(request)
        if user is None:
            raise LoginRequired()
        if needed is not None and not user.can(needed):
            raise _forbidden(auth, user, needed)
        return user

    current_user.headwater_rule = Rule(needed)  # type: ignore[attr-defined]
    return current_user


def _forbidden(auth: WebAuth, user: SessionUser, needed: Role) -> Forbidden:
    has = f"the {user.role} role" if user.role else "no role in this organisation"
    where = f" --org {user.org}" if auth.tenancy.multi and user.org else ""
    return Forbidden(
        "You do not have access to this",
        why=f"it needs the {needed} role (or a higher one), and {user.email} has {has}",
        fix=f"Ask an admin to change your role: headwater user set-role {user.email} {needed}{where}",
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
        audit.login_failed(request, email, "rate limited")
        return _login_form(request, target, email=email, error=exc, status=429, headers={"Retry-After": str(exc.retry_after_seconds)})
    except LoginFailed as exc:
        audit.login_failed(request, email, "wrong e-mail or password")
        return _login_form(request, target, email=email, error=exc, status=401)
    except AccountDisabled as exc:
        audit.login_failed(request, email, "account disabled")
        return _login_form(request, target, email=email, error=exc, status=403)
    audit.logged_in(request, new.user)
    return start_session(request, new.token, target)


def start_session(request: Request, token: str, target: str) -> Response:
    """The browser's new session: its cookie, and on to ``target``."""
    auth = _auth(request)
    auth.accounts.logout(request.cookies.get(SESSION_COOKIE))  # a session this browser had before ends
    response = RedirectResponse(target, status_code=303)
    auth.set_cookie(request, response, SESSION_COOKIE, token, int(auth.settings.policy.absolute_timeout.total_seconds()))
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
    context = {"next": target, "email": email, "error": error, "message": message}
    return anonymous_form(request, "login.html", context, status=status, headers=headers)


def anonymous_form(request: Request, template: str, context: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A page with a form for someone without a session (login, invitation): it carries
    ``login_csrf``, the token of the double-submit cookie set with it."""
    auth = _auth(request)
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not TOKEN.fullmatch(token):
        token = secrets.token_urlsafe(32)
    response: Response = request.app.state.templates.TemplateResponse(request, template, {**context, "login_csrf": token}, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})
    auth.set_cookie(request, response, LOGIN_CSRF_COOKIE, token, None)
    return response


# --- wiring -------------------------------------------------------------------------------------


def login_redirect(request: Request) -> str:
    if request.method not in ("GET", "HEAD"):
        return "/login"
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login" if path == "/" else f"/login?next={quote(path, safe='')}"


async def _login_required(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HeadwaterError):  # registered for LoginRequired only: anything else goes on untouched
        raise exc
    if is_api(request):
        return error_response(request, 401, exc.what, exc.why, exc.fix)
    return RedirectResponse(login_redirect(request), status_code=303)


async def _forbidden_response(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HeadwaterError):  # registered for Forbidden only: anything else goes on untouched
        raise exc
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
    except Exception:
        logger.debug("no user for the page: the system database could not be read", exc_info=True)
        return None


@jinja2.pass_context
def url(context: Any, path: str) -> str:
    """``{{ url("/runs") }}``: a path of the page's organisation (``/o/<slug>/runs`` in an install with many)."""
    request = context.get("request")
    org = getattr(request.state, "hw_org", None) if request is not None else None
    return org.url(path) if org is not None else path


def _template_context(request: Request) -> dict[str, Any]:
    user = _template_user(request)
    org = getattr(request.state, "hw_org", None)
    tenancy = _auth(request).tenancy
    title = org.site.title if org is not None and tenancy.multi else tenancy.title
    return {"current_user": user, "current_org": org, "multi_org": tenancy.multi, "project_name": title}


def install(app: FastAPI, tenancy: Tenancy, templates: Jinja2Templates, settings: AuthSettings | None = None) -> None:
    """Wire accounts into the app. The app must be created with ``dependencies=[Depends(guard)]``."""
    app.state.auth = WebAuth(app, tenancy, settings or AuthSettings.from_env())
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden_response)
    templates.env.globals.update(csrf_field=csrf_field, url=url)
    templates.context_processors.append(_template_context)
    app.include_router(router)
