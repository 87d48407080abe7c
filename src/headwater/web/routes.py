"""The organisation's dashboards, chart data, downloads and run history. Endpoints are plain
``def``: FastAPI runs them in its thread pool, so DuckDB and the system database never block the
event loop.

Every route reads its organisation from `org_context(request)` (resolved by the guard) and hands
its data and the member's row scope to the dashboards service explicitly."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote, urlencode

import pyarrow as pa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from headwater import dashboards as service
from headwater.config.model import RESERVED_PREFIX, Chart, Dashboard, Filter
from headwater.dashboards.scope import RowScope, ScopeRefused
from headwater.errors import HeadwaterError, NotFound
from headwater.publish import PublishedData, export
from headwater.publish.export import XLSX_MAX_ROWS, Format
from headwater.services.runs import get_run, log_lines, recent_runs
from headwater.system.accounts import Role
from headwater.web import audit, present
from headwater.web.auth import org_context, require
from headwater.web.context import BrokenFile
from headwater.web.tenancy import OrgContext

CHART_ROWS = 10_000  # points sent to a chart or the JSON API; downloads have no cap
TABLE_ROWS = 1_000  # rows of a table chart rendered into the page
RUNS_SHOWN = 50
# `?hw_raw=1` on a CSV download: text as it is, for programs (by default formulas are neutralised,
# see publish/export.py). No filter can be called so: names starting with hw_ are Headwater's.
RAW_PARAMETER = f"{RESERVED_PREFIX}raw"
DOWNLOAD = Depends(require(Role.viewer))  # who may download: as for the CSV routes in auth.ROUTE_RULES

router = APIRouter()


@router.get("/")
def index(request: Request) -> Response:
    org = org_context(request)
    ctx = org.ctx
    if len(ctx.dashboards) == 1:
        return RedirectResponse(org.url(f"/dashboards/{quote(next(iter(ctx.dashboards)), safe='')}"), status_code=303)
    tables = service.readable_tables(ctx.data, org.scope) if ctx.warehouse.current_snapshot() else []
    return _page(request, "index.html", dashboards=ctx.dashboards, tables=tables)


@router.get("/dashboards/{name}")
def dashboard_page(request: Request, name: str) -> Response:
    org = org_context(request)
    ctx = org.ctx
    try:
        dashboard = ctx.dashboard(name)
    except BrokenFile as exc:
        if not _sees_errors(org):  # a viewer is told it is unavailable, not what is wrong with the file
            raise BrokenFile(exc.what, fix="Try again later.") from None
        raise
    data = ctx.published()
    selections = service.check_selections(dashboard, _selections(request), data)
    query = _query_string(selections)
    filters = [_filter_view(org, data, dashboard, f, selections) for f in dashboard.filters]
    views = [_chart_view(org, data, dashboard, chart, index, name, selections, query) for index, chart in enumerate(dashboard.charts)]
    snapshot = ctx.warehouse.current_snapshot()
    return _page(
        request,
        "dashboard.html",
        name=name,
        dashboard=dashboard,
        notices=_file_notices(org, name),
        filters=filters,
        kpis=[v for v in views if v["chart"].kind.headline],
        charts=[v for v in views if not v["chart"].kind.headline],
        tables=_table_views(org, data, dashboard, name, selections, query),
        filtered=bool(selections),
        xlsx_rows=XLSX_MAX_ROWS - 1,
        snapshot=snapshot.stem if snapshot else None,
    )


@router.get("/api/dashboards/{name}/charts/{index:int}")
def chart_json(request: Request, name: str, index: int) -> Response:
    """The chart's data as JSON. The cache keeps the encoded bytes, not Python lists: a request is
    then a lookup, and an install with many organisations' results in memory keeps the garbage
    collector's full passes short (millions of cached list items made them tens of ms)."""
    org = org_context(request)
    ctx = org.ctx
    dashboard, chart = ctx.dashboard(name), ctx.chart(name, index)
    data = ctx.published()
    selections = _selections(request)

    def compute() -> bytes:
        result = service.fetch(data, chart, service.chart_query(data, dashboard, chart, selections, org.scope), CHART_ROWS)
        # bytes(): Starlette types .body as bytes | memoryview; JSONResponse renders bytes, which bytes() returns as is
        return bytes(JSONResponse({"columns": result.columns, "rows": present.json_rows(result), "truncated": result.truncated}).body)

    key = ("chart", name, index, tuple(sorted((k, tuple(sorted(v))) for k, v in selections.items())), org.cache_scope)
    return Response(ctx.cached(key, compute), media_type="application/json")


# Downloads: every chart's data and every published table, as CSV or XLSX, with the dashboard's
# filters applied, streamed with no row cap. "/tables/..." is a whole table, unfiltered.


@router.get("/dashboards/{name}/charts/{index:int}.csv")
def chart_csv(request: Request, name: str, index: int) -> StreamingResponse:
    return _chart_download(request, name, index, "csv")


@router.get("/dashboards/{name}/charts/{index:int}.xlsx", dependencies=[DOWNLOAD])
def chart_xlsx(request: Request, name: str, index: int) -> StreamingResponse:
    return _chart_download(request, name, index, "xlsx")


@router.get("/dashboards/{name}/tables/{table}.csv", dependencies=[DOWNLOAD])
def dashboard_table_csv(request: Request, name: str, table: str) -> StreamingResponse:
    return _table_download(request, name, table, "csv")


@router.get("/dashboards/{name}/tables/{table}.xlsx", dependencies=[DOWNLOAD])
def dashboard_table_xlsx(request: Request, name: str, table: str) -> StreamingResponse:
    return _table_download(request, name, table, "xlsx")


@router.get("/tables/{table}.csv")
def table_csv(request: Request, table: str) -> StreamingResponse:
    return _table_download(request, None, table, "csv")


@router.get("/tables/{table}.xlsx", dependencies=[DOWNLOAD])
def table_xlsx(request: Request, table: str) -> StreamingResponse:
    return _table_download(request, None, table, "xlsx")


@router.get("/runs")
def runs(request: Request) -> Response:
    ctx = org_context(request).ctx
    return _page(request, "runs.html", runs=recent_runs(ctx.system_db(), ctx.project.config.name, RUNS_SHOWN))


@router.get("/runs/{run_id:int}")
def run_detail(request: Request, run_id: int) -> Response:
    ctx = org_context(request).ctx
    db = ctx.system_db()
    run = get_run(db, ctx.project.config.name, run_id)
    if run is None:
        raise NotFound(f"No run {run_id} in this project", fix="The runs page lists the recent ones.")
    checks = [{"check": c, "sample": json.loads(c.sample) if c.sample else None} for c in run.checks]
    steps = [{"step": s, "detail": json.loads(s.detail) if s.detail else None} for s in run.steps]
    return _page(request, "run.html", run=run, steps=steps, checks=checks, log=log_lines(db, run_id))


def _page(request: Request, template: str, **context: Any) -> Response:
    page: Response = request.app.state.templates.TemplateResponse(request, template, context)
    return page


def _selections(request: Request) -> dict[str, list[str]]:
    selections: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key != RAW_PARAMETER:
            selections.setdefault(key, []).append(value)
    return selections


def _raw(request: Request) -> bool:
    return request.query_params.get(RAW_PARAMETER, "").strip().lower() in ("1", "true", "yes", "on")


def _query_string(selections: dict[str, list[str]]) -> str:
    encoded = urlencode([(key, value) for key, values in selections.items() for value in values])
    return f"?{encoded}" if encoded else ""


def _sees_errors(org: OrgContext) -> bool:
    """Analysts and admins are shown why a chart or dashboard cannot be shown; viewers that it cannot."""
    return org.member.can(Role.analyst)


def _file_notices(org: OrgContext, name: str) -> list[str]:
    """For analysts and admins: the project's files that do not load while their last good version is shown."""
    if not _sees_errors(org):
        return []
    ctx = org.ctx
    notices = [f"{ctx.project.file} does not load; this page shows its last good version. {ctx.invalid.render()}"] if ctx.invalid is not None else []
    if name in ctx.broken:
        broken = ctx.broken[name]
        notices.append(f"{broken.file} does not load; this page shows its last good version. {broken.what}" + (f" ({broken.why})" if broken.why else ""))
    return notices


def _unavailable(org: OrgContext, exc: HeadwaterError) -> str | None:
    """What a chart or filter that cannot be shown says: the reason for analysts and admins, nothing for viewers."""
    return exc.render() if _sees_errors(org) else None


def _filter_view(org: OrgContext, data: PublishedData, dashboard: Dashboard, spec: Filter, selections: dict[str, list[str]]) -> dict[str, Any]:
    try:
        return _filter_options_view(data, dashboard, spec, selections, org.scope)
    except HeadwaterError as exc:  # the other filters and the charts still work
        return {"type": "unavailable", "key": spec.key, "label": spec.label or spec.key, "error": _unavailable(org, exc)}


def _filter_options_view(data: PublishedData, dashboard: Dashboard, spec: Filter, selections: dict[str, list[str]], scope: RowScope) -> dict[str, Any]:
    view: dict[str, Any] = {"type": spec.type, "key": spec.key, "label": spec.label or spec.key}
    if spec.type == "date_range":
        low, high = service.date_bounds(data, dashboard, spec.key, scope=scope)
        start, end = (selections.get(key, [""])[0] for key in spec.parameters)
        return view | {"min": low.isoformat() if low else "", "max": high.isoformat() if high else "", "from": start, "to": end, "names": spec.parameters}
    options = service.filter_options(data, dashboard, spec.key, scope=scope)
    selected = selections.get(spec.key, [])
    missing = [v for v in selected if v not in options]  # keep a selection visible even past the options cap
    return view | {"options": missing + options, "selected": set(selected)}


def _chart_view(
    org: OrgContext, data: PublishedData, dashboard: Dashboard, chart: Chart, index: int, name: str, selections: dict[str, list[str]], query_string: str
) -> dict[str, Any]:
    """A chart that cannot be computed (a column its table lacks, SQL that fails) is a card of its own
    saying so; the rest of the page is shown as usual."""
    try:
        query = service.chart_query(data, dashboard, chart, selections, org.scope)
        limit = 1 if chart.kind.headline else TABLE_ROWS if chart.kind.tabular else CHART_ROWS
        result = service.fetch(data, chart, query, limit)
    except ScopeRefused:
        raise  # the member may not read the table: the page says so, as before
    except HeadwaterError as exc:
        return {"index": index, "chart": chart, "failed": True, "error": _unavailable(org, exc)}
    base = org.url(f"/dashboards/{quote(name, safe='')}/charts/{index}")
    view = {
        "index": index,
        "chart": chart,
        "result": result,
        "csv_url": f"{base}.csv{query_string}",
        "xlsx_url": f"{base}.xlsx{query_string}",
        "unfiltered": _unfiltered(dashboard, query.unfiltered, selections),
        "failed": False,
    }
    return view | present.chart_view(chart, result)


def _table_views(org: OrgContext, data: PublishedData, dashboard: Dashboard, name: str, selections: dict[str, list[str]], query_string: str) -> list[dict[str, Any]]:
    views = []
    for table in service.readable_tables(data, org.scope):
        base = org.url(f"/dashboards/{quote(name, safe='')}/tables/{quote(table, safe='')}")
        try:
            query = service.table_query(data, dashboard, table, selections, org.scope)
        except ScopeRefused:
            raise
        except HeadwaterError as exc:  # a filter that does not fit this table: the other downloads still work
            views.append({"table": table, "failed": True, "error": _unavailable(org, exc)})
            continue
        views.append({"table": table, "csv_url": f"{base}.csv{query_string}", "xlsx_url": f"{base}.xlsx{query_string}", "unfiltered": _unfiltered(dashboard, query.unfiltered, selections), "failed": False})
    return views


def _unfiltered(dashboard: Dashboard, keys: tuple[str, ...], selections: dict[str, list[str]]) -> list[str]:
    """Labels of the filters in use that do not apply to a chart or table."""
    return [f.label or f.key for f in dashboard.filters if f.key in keys and any(p in selections for p in f.parameters)]


def _chart_download(request: Request, name: str, index: int, fmt: Format) -> StreamingResponse:
    org = org_context(request)
    dashboard, chart = org.ctx.dashboard(name), org.ctx.chart(name, index)
    data = org.ctx.published()
    selections = _selections(request)
    query = service.chart_query(data, dashboard, chart, selections, org.scope)
    response = _download(request, service.stream(data, chart, query), present.filename(f"{name}-{present.slug(chart.title)}.{fmt}"), fmt)
    audit.record(request, "export", f"{name} chart {index}", {"format": fmt, "chart": chart.title, "filters": selections})
    return response


def _table_download(request: Request, name: str | None, table: str, fmt: Format) -> StreamingResponse:
    org = org_context(request)
    dashboard = org.ctx.dashboard(name) if name is not None else None
    data = org.ctx.published()
    selections = _selections(request)  # on a bare table: refused, never ignored
    query = service.table_query(data, dashboard, table, selections, org.scope)
    response = _download(request, service.stream(data, table, query), present.filename(f"{table}.{fmt}"), fmt)
    audit.record(request, "export", table, {"format": fmt, "dashboard": name, "filters": selections})
    return response


def _download(request: Request, opened: AbstractContextManager[pa.RecordBatchReader], filename: str, fmt: Format) -> StreamingResponse:
    """The query runs before the response starts, so a failure is an error page rather than a cut-off file."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
    if fmt == "xlsx":
        with opened as reader:
            handle, _rows = export.xlsx_file(reader)
        headers["Content-Length"] = str(os.fstat(handle.fileno()).st_size)
        return StreamingResponse(export.file_chunks(handle), media_type=export.MEDIA_TYPES["xlsx"], headers=headers)
    chunks = _csv_body(opened, raw=_raw(request))
    body: Iterator[bytes] = itertools.chain([next(chunks)], chunks)  # the header: the writer has seen every column's type
    if "gzip" in request.headers.get("accept-encoding", ""):
        # Compressed here at level 1, not by the app's middleware at level 9: a tenth of the CPU
        # for nearly the same size, so big downloads stream at the speed of the query.
        body = export.gzip_chunks(body)
        headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return StreamingResponse(body, media_type=export.MEDIA_TYPES["csv"], headers=headers)


def _csv_body(opened: AbstractContextManager[pa.RecordBatchReader], *, raw: bool) -> Iterator[bytes]:
    with opened as reader:
        yield from export.csv_chunks(reader, raw=raw)
