"""Queries over run history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from headwater.system import Run, SystemDB


def recent_runs(db: SystemDB, project: str, limit: int = 20) -> list[Run]:
    with db.session() as session:
        query = select(Run).where(Run.project == project).order_by(Run.id.desc()).limit(limit).options(selectinload(Run.steps))
        return list(session.scalars(query))


def get_run(db: SystemDB, project: str, run_id: int) -> Run | None:
    with db.session() as session:
        query = select(Run).where(Run.project == project, Run.id == run_id).options(selectinload(Run.steps))
        return session.scalars(query).first()
