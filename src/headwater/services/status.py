"""What `headwater status` shows: per pipeline its last run, its next scheduled run, how fresh each
of its sources' tables is, and what readers see now (the published snapshot, read from the file).

Freshness comes from the runs' sync steps (`headwater run` and `headwater sync` alike), so status
never opens the build database, which a run in progress holds."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from headwater.config.model import LoadedProject, Schedule
from headwater.orchestrate.pipelines import choose_pipeline
from headwater.publish.query import published_summary
from headwater.services.describe import next_run
from headwater.services.runs import RunRecord, published_tables, recent_runs, run_json, sync_history
from headwater.system import Run, SystemDB
from headwater.warehouse import open_warehouse

SYNC_HISTORY = 200  # sync steps looked at per source for each table's newest successful sync
NOT_SYNCED = ("failed", "stale", "pruned")  # table modes of a sync step that did not bring the table up to date


@dataclass(frozen=True)
class TableFreshness:
    source: str
    table: str
    synced_at: dt.datetime | None  # the end of the newest sync that brought the table up to date; None: never
    rows: int | None  # rows in raw after it
    run_id: int | None
    last_failed: bool = False  # the newest attempt at the table failed (synced_at is from an older one)


@dataclass(frozen=True)
class PipelineStatus:
    name: str
    last_run: RunRecord | None
    last_success: RunRecord | None
    schedule: Schedule | None
    next_run: dt.datetime | None
    tables: list[TableFreshness] = field(default_factory=list)


@dataclass(frozen=True)
class PublishedStatus:
    snapshot: str
    at: dt.datetime
    run_id: int | None
    tables: dict[str, int]
    fallback: str | None  # readers see an older snapshot than the pointer names, and why


def project_status(project: LoadedProject, db: SystemDB, now: dt.datetime, pipeline: str | None = None) -> tuple[list[PipelineStatus], PublishedStatus | None]:
    names = [choose_pipeline(project, pipeline)[0]] if pipeline is not None or not project.config.pipelines else list(project.config.pipelines)
    statuses = []
    freshness: dict[str, list[TableFreshness]] = {}
    for name in names:
        settings = choose_pipeline(project, name)[1]
        last = recent_runs(db, project.config.name, 1, pipeline=name)
        success = recent_runs(db, project.config.name, 1, pipeline=name, status="success")
        sources = settings.sources if settings.sources is not None else list(project.config.sources)
        tables = [t for source in sources for t in freshness.setdefault(source, _freshness(db, project.config.name, source))]
        statuses.append(
            PipelineStatus(
                name, last[0] if last else None, success[0] if success else None, settings.schedule, next_run(settings.schedule, now) if settings.schedule else None, tables
            )
        )
    return statuses, _published(project, db)


def _freshness(db: SystemDB, project: str, source: str) -> list[TableFreshness]:
    """Each table's newest sync that brought it up to date (a sync that found nothing changed counts),
    newest step first; tables of the source never synced are not known here and not listed."""
    found: dict[str, TableFreshness] = {}
    failed_first: set[str] = set()
    for sync in sync_history(db, project, source, SYNC_HISTORY):
        at = sync.step.finished_at or sync.step.started_at
        for item in sync.tables:
            table = str(item["table"])
            if table in found:
                continue
            if item.get("mode") in NOT_SYNCED:
                failed_first.add(table)
                continue
            rows = item.get("rows")
            found[table] = TableFreshness(source, table, at, int(rows) if isinstance(rows, int) else None, sync.run.id, table in failed_first)
    never = [TableFreshness(source, t, None, None, None, True) for t in sorted(failed_first - set(found))]
    return sorted(found.values(), key=lambda t: t.table) + never


def _published(project: LoadedProject, db: SystemDB) -> PublishedStatus | None:
    warehouse = open_warehouse(project.root, project.config.warehouse, project.confinement)
    summary = published_summary(warehouse)
    if summary is None:
        return None
    snapshot, tables = summary
    with db.session() as session:
        run = session.scalars(select(Run).where(Run.project == project.config.name, Run.snapshot == snapshot.name).order_by(Run.id.desc()).limit(1)).first()
        run_id, at = (run.id, run.finished_at) if run is not None else (None, None)
    if at is None:
        at = dt.datetime.fromtimestamp(snapshot.stat().st_mtime, dt.UTC)
    return PublishedStatus(snapshot.name, _utc(at), run_id, tables, warehouse.fallback)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def status_json(pipelines: list[PipelineStatus], published: PublishedStatus | None, now: dt.datetime) -> dict[str, Any]:
    """`headwater status --json`."""

    def when(moment: dt.datetime | None) -> str | None:
        return _utc(moment).isoformat() if moment else None

    return {
        "now": now.isoformat(),
        "pipelines": {
            p.name: {
                "last_run": run_json(p.last_run) if p.last_run else None,
                "last_success": run_json(p.last_success) if p.last_success else None,
                "published_by_last_success": published_tables(p.last_success),
                "schedule": {"cron": p.schedule.cron, "timezone": p.schedule.timezone} if p.schedule else None,
                "next_run": when(p.next_run),
                "tables": [
                    {"source": t.source, "table": t.table, "synced_at": when(t.synced_at), "rows": t.rows, "run": t.run_id, "last_attempt_failed": t.last_failed}
                    for t in p.tables
                ],
            }
            for p in pipelines
        },
        "published": (
            {"snapshot": published.snapshot, "at": when(published.at), "run": published.run_id, "tables": published.tables, "fallback": published.fallback} if published else None
        ),
    }
