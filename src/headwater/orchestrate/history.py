"""Queries over run history."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from headwater.system import Run, RunLog, SystemDB


def recent_runs(db: SystemDB, project: str, limit: int = 20) -> list[Run]:
    with db.session() as session:
        query = select(Run).where(Run.project == project).order_by(Run.id.desc()).limit(limit).options(selectinload(Run.steps))
        return list(session.scalars(query))


MAX_ID = 2**63 - 1  # the largest id a database stores: a larger number (from a URL) is no run at all


def get_run(db: SystemDB, project: str, run_id: int) -> Run | None:
    if not 0 < run_id <= MAX_ID:
        return None
    with db.session() as session:
        query = select(Run).where(Run.project == project, Run.id == run_id).options(selectinload(Run.steps), selectinload(Run.checks))
        return session.scalars(query).first()


ABANDONED = "The process running it stopped before the run finished (killed, crashed or timed out). Published data was left as it was."


def abandon_stale_runs(db: SystemDB, project: str) -> int:
    """Mark runs still 'running' as abandoned. Only call this while holding the project's writer lock:
    then no process can still be running them (the OS released the lock of any that died)."""
    with db.session() as session:
        result = session.execute(
            update(Run)
            .where(Run.project == project, Run.status == "running")
            .values(status="abandoned", finished_at=dt.datetime.now(dt.UTC), error=ABANDONED)
            .execution_options(synchronize_session=False)  # no run objects in this session to refresh
        )
        session.commit()
        return result.rowcount or 0


def log_lines(db: SystemDB, run_id: int, after_id: int = 0) -> list[RunLog]:
    with db.session() as session:
        query = select(RunLog).where(RunLog.run_id == run_id, RunLog.id > after_id).order_by(RunLog.id)
        return list(session.scalars(query))
