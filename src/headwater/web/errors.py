"""Every error ends as a friendly page (or JSON under /api/), never as a traceback."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from headwater.dashboards.scope import ScopeRefused
from headwater.errors import ConfigError, HeadwaterError, NotFound, ProjectBusy
from headwater.system.db import SystemDBUnusable, explain
from headwater.web.context import BrokenFile, NothingPublished

logger = logging.getLogger("headwater.web")

# Most specific first. A broken dashboard file is the server's problem, not the request's.
STATUS: list[tuple[type[HeadwaterError], int]] = [(NothingPublished, 503), (BrokenFile, 503), (SystemDBUnusable, 503), (NotFound, 404), (ScopeRefused, 403), (ProjectBusy, 503), (ConfigError, 500), (HeadwaterError, 400)]
NOT_FOUND_FIX = "Start from the list of dashboards."
_API = re.compile(r"^(/o/[^/]+)?/api/")


class PageNotFound(NotFound):
    """What any unknown address gets, word for word: also an organisation one is not a member of,
    so the answer never tells whether it exists."""

    def __init__(self, path: str) -> None:
        super().__init__("Page not found", why=f"nothing is served at {path}", fix=NOT_FOUND_FIX)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HeadwaterError, _headwater_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _crash)


def is_api(request: Request) -> bool:
    """A JSON API request: under /api/, or under an organisation's /o/<slug>/api/."""
    return _API.match(request.url.path) is not None


def error_response(request: Request, status: int, what: str, why: str | None = None, fix: str | None = None) -> Response:
    if is_api(request):
        return JSONResponse({"error": {"message": what, "why": why, "fix": fix}}, status_code=status)
    templates = request.app.state.templates
    page: Response = templates.TemplateResponse(request, "error.html", {"status": status, "what": what, "why": why, "fix": fix}, status_code=status)
    return page


async def _headwater_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HeadwaterError):  # registered for HeadwaterError only: anything else goes on untouched
        raise exc
    status = next(code for kind, code in STATUS if isinstance(exc, kind))
    if status >= 500:
        logger.warning("%s %s: %s", request.method, request.url.path, exc.render())
    return error_response(request, status, exc.what, exc.why, exc.fix)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only: anything else goes on untouched
        raise exc
    if exc.status_code == 404 and (twin := slash_twin(request)) is not None:
        return RedirectResponse(twin, status_code=307)
    if exc.status_code == 404:
        page = PageNotFound(request.url.path)
        return error_response(request, 404, page.what, page.why, page.fix)
    return error_response(request, exc.status_code, str(exc.detail))


def slash_twin(request: Request) -> str | None:
    """The address with its trailing slash dropped (or added) when a route serves that instead, as a
    path and query: the app is made with ``redirect_slashes=False`` because Starlette's redirect
    named the request's Host header, which a proxy or cache in between may let anyone forge."""
    path = request.scope["path"]
    twin = path[:-1] if path.endswith("/") else path + "/"
    if path == "/" or twin.startswith("//"):  # "//host" in a Location header is another site
        return None
    scope = {**request.scope, "path": twin}
    if not any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
        return None
    query = request.scope.get("query_string", b"").decode("latin-1")
    return quote(request.scope.get("root_path", "") + twin) + (f"?{query}" if query else "")


async def _invalid_request(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestValidationError):  # registered for RequestValidationError only: anything else goes on untouched
        raise exc
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return error_response(request, 400, "The request is not valid", why=problems)


async def _crash(request: Request, exc: Exception) -> Response:
    explained = explain(exc)  # the system database made read-only or damaged under a running server
    if explained is not None:
        logger.error("%s %s: %s", request.method, request.url.path, explained.render())
        return error_response(request, 503, explained.what, explained.why, explained.fix)
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    why = "this is a bug in Headwater; the details were logged on the server"
    return error_response(request, 500, "Something went wrong on the server", why=why, fix="Try again; if it keeps failing, report it with the server's log.")
