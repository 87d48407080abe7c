"""The FastAPI application: server-rendered pages, no CDN, no JavaScript framework.

One app serves one install: a single project (`create_app(project)`, its organisation at
unprefixed URLs, as `headwater serve -p DIR`), or an install with many organisations
(`create_app(install)`, each under ``/o/<slug>/``, as `headwater serve --install DIR`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread
import jinja2
import plotly
from fastapi import Depends, FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater import __version__
from headwater.config.model import LoadedProject
from headwater.publish import export
from headwater.redact import install_logging, redact
from headwater.system.orgs import Install
from headwater.web import auth, errors, install_routes, present
from headwater.web.audit import router as audit_router
from headwater.web.ops import router as ops_router
from headwater.web.routes import router
from headwater.web.tenancy import ORG_PREFIX, Tenancy
from headwater.web.users import router as users_router

logger = logging.getLogger("headwater.web")

if TYPE_CHECKING:
    from headwater.orchestrate.scheduler import Scheduler

HERE = Path(__file__).parent
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# The routers whose routes are served per organisation (see web/auth.py).
ORG_ROUTERS = (router, ops_router, users_router, audit_router)
# Plotly adds <style> elements and style attributes, hence 'unsafe-inline' for styles only.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def create_app(
    target: LoadedProject | Install,
    auth_settings: auth.AuthSettings | None = None,
    *,
    scheduler: Scheduler | None = None,
    schedulers: Mapping[str, Scheduler] | None = None,
    reload: bool = True,
) -> FastAPI:
    """``scheduler`` (one project) or ``schedulers`` (by organisation): the ones running in this
    process, if any; "run now" then goes through them. ``reload``: projects follow their files
    (headwater.yml, dashboards/) as the app runs (web/context.py)."""
    install_logging()  # secrets never reach a log line, whoever hosts the app
    for stale in export.remove_stale_scratch():  # left by a server killed during an XLSX download
        logger.info("removed %s, left by a process that has ended", stale)
    if isinstance(target, Install):
        tenancy = Tenancy(install=target, schedulers=schedulers, reload=reload)
    else:
        tenancy = Tenancy(project=target, scheduler=scheduler, reload=reload)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(tenancy.open_all)
        yield
        tenancy.shutdown()  # runs started from the web finish (the schedulers' owner stops them)

    app = FastAPI(
        title=f"Headwater: {tenancy.title}", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
        redirect_slashes=False,  # web/errors.py redirects to the path itself, never naming the Host header
        dependencies=[Depends(auth.guard)],  # every route's organisation, permission rule and CSRF: see web/auth.py
    )  # fmt: skip
    app.state.tenancy = tenancy
    app.state.org_routers = ORG_ROUTERS
    if tenancy.home is not None:  # a one-project install: its organisation's objects, for tests and tools
        app.state.ctx = tenancy.home.ctx
        app.state.launcher = tenancy.home.launcher
    app.state.templates = _templates()
    errors.install(app)
    auth.install(app, tenancy, app.state.templates, auth_settings)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(SecurityHeaders)
    app.add_api_route("/static/plotly.min.js", _plotly_js, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(install_routes.router)
    if tenancy.multi:
        app.include_router(install_routes.home_router)
    for org_router in ORG_ROUTERS:
        app.include_router(org_router, prefix=ORG_PREFIX if tenancy.multi else "")
    return app


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined)
    templates = Jinja2Templates(env=env)
    templates.env.globals.update(version=__version__, plotly_version=plotly.__version__)
    templates.env.filters.update(cell=present.cell, duration=present.duration, utc=present.utc, first_line=present.first_line)
    templates.env.filters["redact"] = redact  # passwords in URLs never reach a page (see web/ops.py)
    templates.env.tests["number"] = present.is_number
    return templates


def _plotly_js() -> FileResponse:
    # Pages ask for it with ?v=<plotly version>, so a year-long cache is safe across upgrades.
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=31536000, immutable"})


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)
