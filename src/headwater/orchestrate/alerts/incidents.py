"""The incident bookkeeping: one incident per (project, pipeline), opened by the first failed run,
kept by the next ones, closed by a success.

`book` is one transaction that commits *before* anything is sent: sending can take a while (an SMTP
server that does not answer) and must never hold the database's write lock, and a channel that fails
must not make the next run alert again.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, selectinload

from headwater.errors import NotFound
from headwater.orchestrate.alerts.log import Log, safe_log
from headwater.system import Incident, Run, SystemDB

Event = Literal["failure", "still_failing", "recovery"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lock_pipeline(session: Session, project: str, pipeline: str) -> None:
    """Serialise bookkeeping for one pipeline, so two processes never open two incidents.

    SQLite: a write as the transaction's first statement takes the database's write lock (an UPDATE
    that changes nothing still does). PostgreSQL: a transaction-scoped advisory lock on the pair.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"headwater-incident:{project}:{pipeline}"})
    else:
        open_ = (Incident.project == project) & (Incident.pipeline == pipeline) & Incident.closed_at.is_(None)
        session.execute(update(Incident).where(open_).values(last_run_id=Incident.last_run_id).execution_options(synchronize_session=False))


def _open_incident(session: Session, project: str, pipeline: str) -> Incident | None:
    query = (
        select(Incident)
        .where(Incident.project == project, Incident.pipeline == pipeline, Incident.closed_at.is_(None))
        .order_by(Incident.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def book(db: SystemDB, run_id: int, log: Log) -> tuple[Event, Run, Incident] | None:
    """The incident bookkeeping for one finished run, in one transaction. Returns what to announce."""
    with db.session() as session:  # a finished run does not change: read it outside the transaction
        run = session.scalars(select(Run).where(Run.id == run_id).options(selectinload(Run.steps), selectinload(Run.checks))).first()
    if run is None:
        raise NotFound(f"Run {run_id} is not in the system database", fix="Alerts are sent for recorded runs only.")
    if run.status not in ("success", "failed"):
        safe_log(log, "warning", f"alerts: run {run.id} is {run.status}, not finished; nothing to announce")
        return None
    with db.session() as session, session.begin():
        # First statement: in SQLite a write taken after a read fails at once if another connection
        # wrote in between (the run log does, all the time); taken first, it waits its turn.
        _lock_pipeline(session, run.project, run.pipeline)
        incident = _open_incident(session, run.project, run.pipeline)

        if run.status == "failed":
            if incident is not None:
                if run.id not in (incident.first_run_id, incident.last_run_id):  # not the same run reported again
                    incident.last_run_id = max(incident.last_run_id, run.id)
                    incident.failures += 1
                return "still_failing", run, incident
            handled = session.scalars(
                select(Incident.id).where(
                    Incident.project == run.project, Incident.pipeline == run.pipeline, Incident.first_run_id <= run.id, Incident.last_run_id >= run.id
                )
            ).first()
            if handled is not None:  # a repeated call for a run of a closed incident
                return None
            incident = Incident(
                project=run.project, pipeline=run.pipeline, opened_at=run.finished_at or _now(), first_run_id=run.id, last_run_id=run.id, failures=1
            )
            session.add(incident)
            session.flush()
            return "failure", run, incident

        if incident is None or run.id < incident.first_run_id:  # healthy, or an older run reported late
            return None
        incident.closed_at = run.finished_at or _now()
        return "recovery", run, incident
