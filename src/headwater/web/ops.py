"""Operations pages: sources, pipelines ("run now") and a run's live log (the users admin page is web/users.py).

Everything here reads the project file and the system database, never the build database: a
source's last sync, rows and freshness come from the run records the pipeline wrote (the sync
step's per-table detail, the freshness checks' results). Who may open what is in
`auth.ROUTE_RULES` (analyst+ for sources, pipelines and logs). Like every organisation route,
each reads its organisation from `org_context(request)`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from headwater.config.model import FreshnessCheck, LoadedProject, Pipeline
from headwater.errors import NotFound
from headwater.redact import redact
from headwater.services import describe, runs
from headwater.services.runs import MAX_ID, RunRecord, StepRecord, log_page, log_text
from headwater.system import SystemDB
from headwater.warehouse import capabilities
from headwater.web import audit, present
from headwater.web.auth import org_context
from headwater.web.context import WebContext
from headwater.web.launcher import Launcher

SYNCS_SHOWN = 20  # per source, on its page
RUNS_PER_PIPELINE = 5  # on the pipelines page
LOG_PAGE = 500  # log lines per request of the live log

router = APIRouter()


# --- run records --------------------------------------------------------------------------------


def run_view(run: RunRecord, base: str = "") -> dict[str, Any]:
    """A run as the pages and the JSON API show it (``base``: the organisation's URL prefix)."""
    return {
        "id": run.id,
        "url": f"{base}/runs/{run.id}",
        "pipeline": run.pipeline,
        "status": run.status,
        "trigger": run.trigger,
        "started": present.utc(run.started_at),
        "duration": present.duration(run.duration),
        "rows_synced": present.cell(run.rows_synced),
        "error": redact(present.first_line(run.error)),
    }


def step_view(step: StepRecord) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status,
        "duration": present.duration(step.duration),
        "rows": present.cell(step.rows),
        "error": redact(present.first_line(step.error)),
    }


def pipeline_runs(db: SystemDB, project: str, pipeline: str, limit: int, base: str = "") -> list[dict[str, Any]]:
    return [run_view(run, base) for run in runs.recent_runs(db, project, limit, pipeline=pipeline)]


def last_success(db: SystemDB, project: str, pipeline: str, base: str = "") -> dict[str, Any] | None:
    found = runs.recent_runs(db, project, 1, pipeline=pipeline, status="success")
    return run_view(found[0], base) if found else None


def sync_history(db: SystemDB, project: str, source: str, limit: int, *, successful: bool = False, base: str = "") -> list[dict[str, Any]]:
    """The newest ``sync:<source>`` steps of the project's runs, newest first."""
    syncs = []
    for sync in runs.sync_history(db, project, source, limit, successful=successful):
        step, tables = sync.step, sync.tables
        syncs.append(
            {
                "run": run_view(sync.run, base),
                "status": step.status,
                "at": present.utc(step.finished_at or step.started_at),
                "duration": present.duration(step.duration),
                "rows": step.rows,
                "error": redact(present.first_line(step.error)),
                "tables": tables,
                "quarantined": describe.quarantined(tables),
            }
        )
    return syncs


def freshness(db: SystemDB, loaded: LoadedProject, source: str, base: str = "") -> list[dict[str, Any]]:
    """Each freshness check on ``source`` (of any pipeline), with its latest result."""
    views = []
    for pipeline_name, pipeline in loaded.config.pipelines.items():
        for check in pipeline.checks:
            if not isinstance(check, FreshnessCheck) or check.source != source:
                continue
            found = runs.latest_check(db, loaded.config.name, pipeline_name, "freshness", check.name)
            result, run = found if found else (None, None)
            views.append(
                {
                    "name": check.name,
                    "pipeline": pipeline_name,
                    "table": check.table,
                    "column": check.column,
                    "max_age": describe.age_words(check.max_age),
                    "severity": check.severity,
                    "status": result.status if result else None,
                    "observed": result.observed if result else None,
                    "message": redact(result.message) if result and result.message else None,
                    "run": run_view(run, base) if run else None,
                }
            )
    return views


def source_view(ctx: WebContext, name: str, history: int, base: str = "") -> dict[str, Any]:
    loaded = ctx.project
    spec = loaded.config.sources[name]
    db = ctx.system_db()
    last = sync_history(db, loaded.config.name, name, 1, successful=True, base=base)
    last_sync = last[0] if last else None
    return {
        "name": name,
        "type": spec.type,
        "tables_setting": describe.tables_setting(spec, name),
        "settings": describe.source_settings(spec),
        "last_sync": last_sync,
        "quarantined": last_sync["quarantined"] if last_sync else None,
        "quarantine": describe.quarantine_report(last_sync["tables"] if last_sync else [], name, capabilities(loaded.config.warehouse.type).max_identifier_length) if describe.is_file_source(spec) else None,
        "freshness": freshness(db, loaded, name, base),
        "history": sync_history(db, loaded.config.name, name, history, base=base) if history else [],
        "pipelines": [p for p, pipeline in loaded.config.pipelines.items() if pipeline.sources is None or name in pipeline.sources],
    }


def table_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sync history regrouped per table: [{table, syncs: [{run, at, rows, seconds, mode, quarantined}]}]."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for sync in history:
        for stats in sync["tables"]:
            tables.setdefault(str(stats["table"]), []).append({"run": sync["run"], "at": sync["at"], **stats})
    return [{"table": table, "syncs": syncs} for table, syncs in sorted(tables.items())]


# --- pages: sources -----------------------------------------------------------------------------


@router.get("/sources")
def sources_page(request: Request) -> Response:
    org = org_context(request)
    views = [source_view(org.ctx, name, 0, org.base) for name in org.project.config.sources]
    return _page(request, "sources.html", sources=views)


@router.get("/sources/{name}")
def source_page(request: Request, name: str) -> Response:
    org = org_context(request)
    if name not in org.project.config.sources:
        raise NotFound(f"No source named '{name}'", fix=f"Sources of this project: {', '.join(org.project.config.sources) or 'none yet'}.")
    view = source_view(org.ctx, name, SYNCS_SHOWN, org.base)
    return _page(request, "source.html", source=view, tables=table_history(view["history"]), shown=SYNCS_SHOWN)


# --- pages: pipelines ---------------------------------------------------------------------------


def pipeline_views(ctx: WebContext, launcher: Launcher, now: dt.datetime, base: str = "") -> list[dict[str, Any]]:
    loaded = ctx.project
    db = ctx.system_db()
    states = launcher.states()
    scheduled = launcher.scheduler.next_runs() if launcher.scheduler is not None else {}
    views = []
    for name, pipeline in loaded.config.pipelines.items():
        views.append(_pipeline_view(db, loaded, name, pipeline, states.get(name), scheduled.get(name, _UNSET), now, base))
    return views


_UNSET: Any = object()


def _pipeline_view(db: SystemDB, loaded: LoadedProject, name: str, pipeline: Pipeline, state: str | None, scheduled: Any, now: dt.datetime, base: str) -> dict[str, Any]:
    schedule = pipeline.schedule
    view: dict[str, Any] = {
        "name": name,
        "sources": pipeline.sources if pipeline.sources is not None else list(loaded.config.sources),
        "after": pipeline.after,
        "timeout": describe.age_words(pipeline.timeout) if pipeline.timeout else None,
        "schedule": None,
        "state": state,
        "runs": pipeline_runs(db, loaded.config.name, name, RUNS_PER_PIPELINE, base),
        "last_success": last_success(db, loaded.config.name, name, base),
    }
    if schedule is not None:
        at = scheduled if scheduled is not _UNSET else describe.next_run(schedule, now)
        view["schedule"] = {
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "words": describe.describe_cron(schedule.cron),
            "catch_up": schedule.catch_up,
            "next": {"local": describe.local_time(at, schedule.timezone), "utc": present.utc(at), "until": describe.until(at, now)} if at else None,
        }
    return view


@router.get("/pipelines")
def pipelines_page(request: Request, started: str | None = None, busy: str | None = None) -> Response:
    org = org_context(request)
    launcher = org.site.launcher
    names = org.project.config.pipelines
    views = pipeline_views(org.ctx, launcher, dt.datetime.now(dt.UTC), org.base)
    flash = None
    if started in names:
        flash = {"kind": "ok", "text": f"A run of {started} was queued. It shows below as soon as it starts; open it to follow its log."}
    elif busy in names:
        flash = {"kind": "busy", "text": f"{busy} is already running (or queued): a second run was not started. Follow the current one below."}
    return _page(request, "pipelines.html", pipelines=views, flash=flash, via_scheduler=launcher.via_scheduler)


@router.post("/pipelines/{name}/run")
def run_now(request: Request, name: str) -> Response:
    org = org_context(request)
    started = org.site.launcher.start(name)  # NotFound for an unknown pipeline
    audit.record(request, "run_triggered", name, {"started": started})
    query = urlencode({"started" if started else "busy": name})
    return RedirectResponse(org.url(f"/pipelines?{query}#pipeline-{quote(name, safe='')}"), status_code=303)


@router.get("/api/pipelines")
def pipelines_json(request: Request) -> JSONResponse:
    """What the pipelines page polls while a run is queued or running."""
    org = org_context(request)
    states = org.site.launcher.states()
    db = org.ctx.system_db()
    project = org.project.config.name
    return JSONResponse(
        {"pipelines": [{"name": name, "state": states.get(name), "runs": pipeline_runs(db, project, name, RUNS_PER_PIPELINE, org.base)} for name in org.project.config.pipelines]},
        headers={"Cache-Control": "no-store"},
    )


# --- the live log -------------------------------------------------------------------------------


@router.get("/api/runs/{run_id:int}/log")
def run_log(request: Request, run_id: int, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> JSONResponse:
    """Log lines of a run with an id above ``after`` (at most LOG_PAGE; ``more`` says whether others
    follow), the run's status and its steps: what the run page polls while the run is running."""
    org = org_context(request)
    page = log_page(org.ctx.system_db(), org.project.config.name, run_id, after, LOG_PAGE)
    if page is None:
        raise NotFound(f"No run {run_id} in this project", fix="The runs page lists the recent ones.")
    body = {
        "run": run_view(page.run, org.base) | {"finished": page.run.status != "running"},
        "lines": [{"id": line.id, "at": line.at.isoformat(), "level": line.level, "message": line.message, "text": log_text(line)} for line in page.lines],
        "last_id": page.last_id,
        "more": page.more,
        "steps": [step_view(step) for step in page.run.steps],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})




# --- helpers ------------------------------------------------------------------------------------


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    page: Response = request.app.state.templates.TemplateResponse(request, template, context, status_code=status, headers={"Cache-Control": "no-store"})
    return page
