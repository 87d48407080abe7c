"""Operations pages: sources, pipelines ("run now") and a run's live log (the users admin page is web/users.py).

Everything here reads the project file and the system database, never the build database: a
source's last sync, rows and freshness come from the run records the pipeline wrote (the sync
step's per-table detail, the freshness checks' results). Who may open what is in
`auth.ROUTE_RULES` (analyst+ for sources, pipelines and logs). Like every organisation route,
each reads its organisation from `org_context(request)`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select

from headwater.config.cron import cron_weekdays
from headwater.config.model import FreshnessCheck, LoadedProject, Pipeline, Schedule
from headwater.errors import NotFound
from headwater.orchestrate.history import MAX_ID
from headwater.orchestrate.scheduler import CrontabTrigger
from headwater.redact import REDACTED, is_secret_name, redact
from headwater.system import CheckResult, Run, RunLog, RunStep, SystemDB
from headwater.web import audit, present
from headwater.web.auth import org_context
from headwater.web.context import WebContext
from headwater.web.launcher import Launcher

SYNCS_SHOWN = 20  # per source, on its page
RUNS_PER_PIPELINE = 5  # on the pipelines page
LOG_PAGE = 500  # log lines per request of the live log

router = APIRouter()


# --- secrets ------------------------------------------------------------------------------------

# Pages show text through `redact` (headwater.redact): registered secrets, passwords in URLs
# (``postgresql://ana:***@db/prod``) and ``password=`` pairs become ***; a setting whose name says
# it is a secret is never shown, whatever its value looks like.


def redacted_settings(settings: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A source's settings as (name, shown value) pairs, nested ones as dotted names, secrets hidden."""
    shown: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            shown.extend(redacted_settings(value, f"{name}."))
        elif value is None:
            continue
        elif is_secret_name(str(key)):
            shown.append((name, REDACTED))
        elif isinstance(value, (list, tuple)):
            shown.append((name, ", ".join(redact(str(v)) for v in value)))
        else:
            shown.append((name, redact(str(value))))
    return shown


# --- schedules in words -------------------------------------------------------------------------

_DAY_NAMES = {"mon": "Monday", "tue": "Tuesday", "wed": "Wednesday", "thu": "Thursday", "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}
_WEEK = list(_DAY_NAMES)


def describe_cron(cron: str) -> str | None:
    """Common cron expressions in words ("every day at 07:00"); None for the rest (shown as cron)."""
    fields = cron.split()
    if len(fields) != 5:
        return None
    minute, hour, day, month, weekday = fields
    if month != "*":
        return None
    try:
        days = _days(weekday)
    except ValueError:
        return None
    if days is None or (day != "*" and weekday != "*"):
        return None
    when = _day_words(day, days)
    if when is None:
        return None
    if minute == "*" and hour == "*":
        return _join("every minute", when)
    if (step := re.fullmatch(r"\*/(\d+)", minute)) and hour == "*":
        return _join(f"every {int(step[1])} minutes", when)
    if not minute.isdigit():
        return None
    if hour == "*":
        return _join(f"every hour at :{int(minute):02d}", when)
    if step := re.fullmatch(r"\*/(\d+)", hour):
        return _join(f"every {int(step[1])} hours at :{int(minute):02d}", when)
    hours = hour.split(",")
    if not all(h.isdigit() for h in hours):
        return None
    times = [f"{int(h):02d}:{int(minute):02d}" for h in hours]
    at = times[0] if len(times) == 1 else ", ".join(times[:-1]) + " and " + times[-1]
    return f"{when} at {at}"


def _days(weekday: str) -> list[str] | None:
    if weekday == "*":
        return []
    names = cron_weekdays(weekday)  # cron's meaning (0 and 7 = Sunday), as mon,tue,...
    return [] if names == "*" else names.split(",")


def _day_words(day: str, days: list[str]) -> str | None:
    if day != "*":
        return f"on day {int(day)} of every month" if day.isdigit() else None
    if not days:
        return "every day"
    if days == ["mon", "tue", "wed", "thu", "fri"]:
        return "Monday to Friday"
    if days == ["sat", "sun"]:
        return "on Saturdays and Sundays"
    positions = [_WEEK.index(d) for d in days]
    if len(days) > 2 and positions == list(range(positions[0], positions[0] + len(days))):
        return f"{_DAY_NAMES[days[0]]} to {_DAY_NAMES[days[-1]]}"
    names = [_DAY_NAMES[d] + "s" for d in days]
    return "on " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])


def _join(frequency: str, when: str) -> str:
    return frequency if when == "every day" else f"{frequency}, {when.removeprefix('on ')}"


def age_words(value: dt.timedelta) -> str:
    """A configured duration as written in headwater.yml: 36h, 2d, 30m, 90s."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def next_run(schedule: Schedule, now: dt.datetime) -> dt.datetime | None:
    """When the schedule fires next after ``now`` (aware UTC): what the scheduler would fire at."""
    at = CrontabTrigger.for_schedule(schedule).next_after(now)
    return at.astimezone(dt.UTC) if at else None


def local_time(moment: dt.datetime, zone: str) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"


def until(moment: dt.datetime, now: dt.datetime) -> str:
    seconds = (moment - now).total_seconds()
    if seconds < 60:
        return "in less than a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"in {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"in {hours} h {minutes:02d} min" if minutes else f"in {hours} h"
    return f"in {round(seconds / 86400)} days"


# --- run records --------------------------------------------------------------------------------


def run_view(run: Run, base: str = "") -> dict[str, Any]:
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


def step_view(step: RunStep) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status,
        "duration": present.duration((step.finished_at - step.started_at) if step.finished_at else None),
        "rows": present.cell(step.rows),
        "error": redact(present.first_line(step.error)),
    }


def table_stats(detail: str | None) -> list[dict[str, Any]]:
    """A sync step's per-table figures: [{table, rows, seconds, mode, quarantined?}], [] if unreadable."""
    try:
        items = json.loads(detail) if detail else []
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and "table" in item]


def pipeline_runs(db: SystemDB, project: str, pipeline: str, limit: int, base: str = "") -> list[dict[str, Any]]:
    with db.session() as session:
        query = select(Run).where(Run.project == project, Run.pipeline == pipeline).order_by(Run.id.desc()).limit(limit)
        return [run_view(run, base) for run in session.scalars(query)]


def last_success(db: SystemDB, project: str, pipeline: str, base: str = "") -> dict[str, Any] | None:
    with db.session() as session:
        query = select(Run).where(Run.project == project, Run.pipeline == pipeline, Run.status == "success").order_by(Run.id.desc()).limit(1)
        run = session.scalars(query).first()
        return run_view(run, base) if run else None


def sync_history(db: SystemDB, project: str, source: str, limit: int, *, successful: bool = False, base: str = "") -> list[dict[str, Any]]:
    """The newest ``sync:<source>`` steps of the project's runs, newest first."""
    with db.session() as session:
        query = (
            select(RunStep, Run)
            .join(Run, Run.id == RunStep.run_id)
            .where(Run.project == project, RunStep.name == f"sync:{source}")
            .order_by(RunStep.id.desc())
            .limit(limit)
        )
        if successful:
            query = query.where(RunStep.status == "success")
        syncs = []
        for step, run in session.execute(query):
            tables = table_stats(step.detail)
            syncs.append(
                {
                    "run": run_view(run, base),
                    "status": step.status,
                    "at": present.utc(step.finished_at or step.started_at),
                    "duration": present.duration((step.finished_at - step.started_at) if step.finished_at else None),
                    "rows": step.rows,
                    "error": redact(present.first_line(step.error)),
                    "tables": tables,
                    "quarantined": _quarantined(tables),
                }
            )
        return syncs


def freshness(db: SystemDB, loaded: LoadedProject, source: str, base: str = "") -> list[dict[str, Any]]:
    """Each freshness check on ``source`` (of any pipeline), with its latest result."""
    views = []
    with db.session() as session:
        for pipeline_name, pipeline in loaded.config.pipelines.items():
            for check in pipeline.checks:
                if not isinstance(check, FreshnessCheck) or check.source != source:
                    continue
                query = (
                    select(CheckResult, Run)
                    .join(Run, Run.id == CheckResult.run_id)
                    .where(Run.project == loaded.config.name, Run.pipeline == pipeline_name, CheckResult.kind == "freshness", CheckResult.name == check.name)
                    .order_by(CheckResult.id.desc())
                    .limit(1)
                )
                found = session.execute(query).first()
                result, run = found if found else (None, None)
                views.append(
                    {
                        "name": check.name,
                        "pipeline": pipeline_name,
                        "table": check.table,
                        "column": check.column,
                        "max_age": age_words(check.max_age),
                        "severity": check.severity,
                        "status": result.status if result else None,
                        "observed": result.observed if result else None,
                        "message": redact(result.message) if result and result.message else None,
                        "run": run_view(run, base) if run else None,
                    }
                )
    return views


def _quarantined(tables: list[dict[str, Any]]) -> int | None:
    counts = [t["quarantined"] for t in tables if isinstance(t.get("quarantined"), int) and not isinstance(t.get("quarantined"), bool)]
    return sum(counts) if counts else None


def source_view(ctx: WebContext, name: str, history: int, base: str = "") -> dict[str, Any]:
    loaded = ctx.project
    spec = loaded.config.sources[name]
    db = ctx.system_db()
    last = sync_history(db, loaded.config.name, name, 1, successful=True, base=base)
    last_sync = last[0] if last else None
    settings = spec.model_dump(exclude={"type", "tables"}, exclude_defaults=spec.type in FILE_SOURCE_TYPES)  # rules: only those written
    return {
        "name": name,
        "type": spec.type,
        "tables_setting": "all tables" if spec.tables == "*" else ", ".join(spec.tables) or getattr(spec, "table", None) or name,
        "settings": redacted_settings(settings),
        "last_sync": last_sync,
        "quarantined": last_sync["quarantined"] if last_sync else None,
        "quarantine": _quarantine_report(last_sync, name) if spec.type in FILE_SOURCE_TYPES else None,
        "freshness": freshness(db, loaded, name, base),
        "history": sync_history(db, loaded.config.name, name, history, base=base) if history else [],
        "pipelines": [p for p, pipeline in loaded.config.pipelines.items() if pipeline.sources is None or name in pipeline.sources],
    }


FILE_SOURCE_TYPES = ("csv", "excel", "google_sheets")


def _quarantine_report(last_sync: dict[str, Any] | None, source: str) -> list[dict[str, Any]]:
    """Per table of the last sync of a file source: rows set aside, by rule, and the most frequent
    offending values (the rows themselves stay in the warehouse, which the web app never opens)."""
    report = []
    for stats in (last_sync or {}).get("tables", []):
        by_rule = stats.get("quarantine_by_rule") if isinstance(stats.get("quarantine_by_rule"), dict) else {}
        notes = [str(n) for n in stats.get("notes", []) if isinstance(n, str)]
        report.append({"table": stats["table"], "relation": f"raw_{source}.{stats['table']}__quarantine", "quarantined": stats.get("quarantined"), "by_rule": by_rule, "notes": notes})
    return report


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
        "timeout": age_words(pipeline.timeout) if pipeline.timeout else None,
        "schedule": None,
        "state": state,
        "runs": pipeline_runs(db, loaded.config.name, name, RUNS_PER_PIPELINE, base),
        "last_success": last_success(db, loaded.config.name, name, base),
    }
    if schedule is not None:
        at = scheduled if scheduled is not _UNSET else next_run(schedule, now)
        view["schedule"] = {
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "words": describe_cron(schedule.cron),
            "catch_up": schedule.catch_up,
            "next": {"local": local_time(at, schedule.timezone), "utc": present.utc(at), "until": until(at, now)} if at else None,
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
    db = org.ctx.system_db()
    with db.session() as session:
        run = session.scalars(select(Run).where(Run.project == org.project.config.name, Run.id == run_id)).first() if run_id <= MAX_ID else None
        if run is None:
            raise NotFound(f"No run {run_id} in this project", fix="The runs page lists the recent ones.")
        lines = list(session.scalars(select(RunLog).where(RunLog.run_id == run_id, RunLog.id > after).order_by(RunLog.id).limit(LOG_PAGE + 1)))
        steps = list(session.scalars(select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.position)))
        more = len(lines) > LOG_PAGE
        lines = lines[:LOG_PAGE]
        body = {
            "run": run_view(run, org.base) | {"finished": run.status != "running"},
            "lines": [{"id": line.id, "at": line.at.isoformat(), "level": line.level, "message": redact(line.message), "text": log_text(line)} for line in lines],
            "last_id": lines[-1].id if lines else after,
            "more": more,
            "steps": [step_view(step) for step in steps],
        }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def log_text(line: RunLog) -> str:
    """A log line as the run page prints it (and `headwater logs` does)."""
    return f"{line.at.astimezone(dt.UTC):%H:%M:%S} {line.level:>5} {redact(line.message)}"


# --- helpers ------------------------------------------------------------------------------------


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    return request.app.state.templates.TemplateResponse(request, template, context, status_code=status, headers={"Cache-Control": "no-store"})
