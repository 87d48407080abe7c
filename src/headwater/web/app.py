"""The FastAPI application: server-rendered pages, no CDN, no JavaScript framework."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

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
from headwater.web import auth, errors, present
from headwater.web.context import WebContext
from headwater.web.launcher import Launcher
from headwater.web.ops import redact
from headwater.web.ops import router as ops_router
from headwater.web.routes import router

if TYPE_CHECKING:
    from headwater.orchestrate.scheduler import Scheduler

HERE = Path(__file__).parent
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# Plotly adds <style> elements and style attributes, hence 'unsafe-inline' for styles only.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def create_app(project: LoadedProject, auth_settings: auth.AuthSettings | None = None, *, scheduler: Scheduler | None = None) -> FastAPI:
    """``scheduler``: the one running in this process, if any; "run now" then goes through it."""
    ctx = WebContext(project)
    launcher = Launcher(project, scheduler)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        launcher.shutdown(wait=True)  # runs started from the web finish (the scheduler's owner stops it)
        ctx.close()

    app = FastAPI(
        title=f"Headwater: {project.config.name}", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
        dependencies=[Depends(auth.guard)],  # every route's permission rule and CSRF: see web/auth.py
    )  # fmt: skip
    app.state.ctx = ctx
    app.state.launcher = launcher
    app.state.templates = _templates(project)
    errors.install(app)
    auth.install(app, ctx, app.state.templates, auth_settings)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(SecurityHeaders)
    app.add_api_route("/static/plotly.min.js", _plotly_js, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    app.include_router(ops_router)
    return app


def _templates(project: LoadedProject) -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined)
    templates = Jinja2Templates(env=env)
    templates.env.globals.update(project_name=project.config.name, version=__version__, plotly_version=plotly.__version__)
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
