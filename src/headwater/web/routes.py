"""The app's routes. Endpoints are plain ``def``: FastAPI runs them in its thread pool, so DuckDB and
the system database never block the event loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote, urlencode

import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from headwater import dashboards as service
from headwater.config.model import Chart, Dashboard, Filter
from headwater.errors import NotFound
from headwater.orchestrate.history import get_run, log_lines, recent_runs
from headwater.publish import PublishedData
from headwater.publish.export import csv_chunks
from headwater.web import present
from headwater.web.context import WebContext

CHART_ROWS = 10_000  # points sent to a chart or the JSON API; downloads have no cap
TABLE_ROWS = 1_000  # rows of a table chart rendered into the page
RUNS_SHOWN = 50

router = APIRouter()


@router.get("/")
def index(request: Request) -> Response:
    ctx = _ctx(request)
    if len(ctx.dashboards) == 1:
        return RedirectResponse(f"/dashboards/{quote(next(iter(ctx.dashboards)), safe='')}", status_code=303)
    tables = ctx.data.tables() if ctx.warehouse.current_snapshot() else []
    return _page(request, "index.html", dashboards=ctx.dashboards, tables=tables)


@router.get("/dashboards/{name}")
def dashboard_page(request: Request, name: str) -> Response:
    ctx = _ctx(request)
    dashboard = ctx.dashboard(name)
    data = ctx.published()
    selections = service.check_selections(dashboard, _selections(request))
    filters = [_filter_view(data, dashboard, f, selections.get(f.column, [])) for f in dashboard.filters]
    charts = [_chart_view(data, dashboard, chart, index, name, selections) for index, chart in enumerate(dashboard.charts)]
    snapshot = ctx.warehouse.current_snapshot()
    return _page(request, "dashboard.html", name=name, dashboard=dashboard, filters=filters, charts=charts, snapshot=snapshot.stem if snapshot else None)


@router.get("/api/dashboards/{name}/charts/{index:int}")
def chart_json(request: Request, name: str, index: int) -> JSONResponse:
    ctx = _ctx(request)
    dashboard, chart = ctx.dashboard(name), ctx.chart(name, index)
    data = ctx.published()
    result = service.fetch(data, chart, service.chart_query(data, dashboard, chart, _selections(request)), CHART_ROWS)
    return JSONResponse({"columns": result.columns, "rows": present.json_rows(result), "truncated": result.truncated})


@router.get("/dashboards/{name}/charts/{index:int}.csv")
def chart_csv(request: Request, name: str, index: int) -> StreamingResponse:
    ctx = _ctx(request)
    dashboard, chart = ctx.dashboard(name), ctx.chart(name, index)
    data = ctx.published()
    query = service.chart_query(data, dashboard, chart, _selections(request))
    return _csv(service.stream(data, chart, query), present.filename(f"{name}-{present.slug(chart.title)}.csv"))


@router.get("/tables/{table}.csv")
def table_csv(request: Request, table: str) -> StreamingResponse:
    data = _ctx(request).published()
    return _csv(data.stream(data.table_query(table)), present.filename(f"{table}.csv"))


@router.get("/runs")
def runs(request: Request) -> Response:
    ctx = _ctx(request)
    return _page(request, "runs.html", runs=recent_runs(ctx.system_db(), ctx.project.config.name, RUNS_SHOWN))


@router.get("/runs/{run_id:int}")
def run_detail(request: Request, run_id: int) -> Response:
    ctx = _ctx(request)
    db = ctx.system_db()
    run = get_run(db, ctx.project.config.name, run_id)
    if run is None:
        raise NotFound(f"No run {run_id} in this project", fix="The runs page lists the recent ones.")
    checks = [{"check": c, "sample": json.loads(c.sample) if c.sample else None} for c in run.checks]
    steps = [{"step": s, "detail": json.loads(s.detail) if s.detail else None} for s in run.steps]
    return _page(request, "run.html", run=run, steps=steps, checks=checks, log=log_lines(db, run_id))


@router.get("/healthz")
def healthz(request: Request) -> dict[str, str | None]:
    snapshot = _ctx(request).warehouse.current_snapshot()
    return {"status": "ok", "published": snapshot.name if snapshot else None}


def _ctx(request: Request) -> WebContext:
    return request.app.state.ctx


def _page(request: Request, template: str, **context: Any) -> Response:
    return request.app.state.templates.TemplateResponse(request, template, context)


def _selections(request: Request) -> dict[str, list[str]]:
    selections: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        selections.setdefault(key, []).append(value)
    return selections


def _filter_view(data: PublishedData, dashboard: Dashboard, spec: Filter, selected: list[str]) -> dict[str, Any]:
    options = service.filter_options(data, dashboard, spec.column)
    missing = [v for v in selected if v not in options]  # keep a selection visible even past the options cap
    return {"column": spec.column, "label": spec.label or spec.column, "options": missing + options, "selected": set(selected)}


def _chart_view(data: PublishedData, dashboard: Dashboard, chart: Chart, index: int, name: str, selections: dict[str, list[str]]) -> dict[str, Any]:
    query = service.chart_query(data, dashboard, chart, selections)
    result = service.fetch(data, chart, query, TABLE_ROWS if chart.type == "table" else CHART_ROWS)
    query_string = urlencode([(column, value) for column, values in selections.items() for value in values])
    view = {"index": index, "chart": chart, "result": result, "csv_url": f"/dashboards/{quote(name, safe='')}/charts/{index}.csv" + (f"?{query_string}" if query_string else "")}
    if chart.type != "table":
        view["figure"] = present.figure(chart, result)
    return view


def _csv(opened: AbstractContextManager[pa.RecordBatchReader], filename: str) -> StreamingResponse:
    body = _csv_body(opened)
    next(body)  # runs the query here, so a failure is an error page rather than a cut-off file
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
    return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)


def _csv_body(opened: AbstractContextManager[pa.RecordBatchReader]) -> Iterator[bytes]:
    with opened as reader:
        yield b""
        yield from csv_chunks(reader)
