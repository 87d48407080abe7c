"""Tables of the system database: runs, their steps and their log lines.

The schema is owned by the Alembic migrations next to this file; these classes mirror it for queries.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, configure_mappers, mapped_column, relationship


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stored as naive UTC (SQLite has no time zones), always returned as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the system database; use datetime.now(UTC)")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(63), index=True)
    pipeline: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16))  # running | success | failed
    trigger: Mapped[str] = mapped_column(String(80))  # cli | web | demo | schedule | catch_up | manual | after:<pipeline>
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rows_synced: Mapped[int | None] = mapped_column(Integer, nullable=True)
    snapshot: Mapped[str | None] = mapped_column(String(255), nullable=True)  # what it published
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    steps: Mapped[list[RunStep]] = relationship(back_populates="run", order_by="RunStep.position", cascade="all, delete-orphan")
    checks: Mapped[list[CheckResult]] = relationship(back_populates="run", order_by="CheckResult.id", cascade="all, delete-orphan")

    @property
    def duration(self) -> dt.timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None


class RunStep(Base):
    __tablename__ = "run_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))  # sync:campaign | dbt:build | publish
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: per-table / per-model figures
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    run: Mapped[Run] = relationship(back_populates="steps")


class RunLog(Base):
    __tablename__ = "run_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)


class CheckResult(Base):
    """One check of one run: a dbt test, a reconciliation or a freshness check."""

    __tablename__ = "check_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # dbt_test | reconcile | freshness
    status: Mapped[str] = mapped_column(String(8))  # pass | fail | warn | error
    severity: Mapped[str] = mapped_column(String(8))  # error (blocks publishing) | warn
    observed: Mapped[str | None] = mapped_column(Text, nullable=True)
    expected: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    sample: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: {"columns": [...], "rows": [[...]]}

    run: Mapped[Run] = relationship(back_populates="checks")


class Incident(Base):
    """A pipeline failing, from its first failed run to the next success: one alert when it opens,
    one when it closes, however many runs fail in between."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_open", "project", "pipeline", "closed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(63))
    pipeline: Mapped[str] = mapped_column(String(63))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_run_id: Mapped[int] = mapped_column(Integer)
    last_run_id: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class ScheduleState(Base):
    """The last time the scheduler fired each scheduled pipeline: what survives downtime."""

    __tablename__ = "schedule_state"

    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(63), primary_key=True)
    last_fire_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


# --- accounts (migration 0003) ---------------------------------------------------------------------


class User(Base):
    """A person who logs in to the web app. What they may do is their membership's role."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)  # normalised: see system.accounts
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string format
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", cascade="all, delete-orphan")


class Organisation(Base):
    """Who data and people belong to. One ('default') until an install hosts several."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    project_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)  # 0005; NULL: this database's own project
    created_by: Mapped[str | None] = mapped_column(String(254), nullable=True)  # 0005


class Membership(Base):
    """A user's role in one organisation: viewer | analyst | admin."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    attributes: Mapped[str | None] = mapped_column(Text, nullable=True)  # 0005; JSON: row-level scope, e.g. {"region": "North"}

    user: Mapped[User] = relationship(back_populates="memberships")


class LoginSession(Base):
    """A logged-in browser. Only the SHA-256 of its cookie's token is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256 of the cookie value
    csrf_token: Mapped[str] = mapped_column(String(64))  # sent in forms; useless without the cookie
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)


class LoginFailure(Base):
    """A failed login, kept for the rate limiter's window (per e-mail and address, and per address)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_email_ip_at", "email", "ip", "at"), Index("ix_login_failures_ip_at", "ip", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254))  # as typed (normalised when valid); may name no account
    ip: Mapped[str] = mapped_column(String(45))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


# --- secrets and the audit log (migration 0004) ------------------------------------------------------


class Secret(Base):
    """One organisation's secret, encrypted (see system.secrets). The value itself is never stored."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_secrets_org_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)  # a Fernet token
    key_id: Mapped[str] = mapped_column(String(32))  # which key encrypted it (see SecretKeys.key_id)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(254))  # an e-mail or "cli:<os user>"


class AuditEntry(Base):
    """Who did what, when, in which organisation (none: e.g. a failed login naming no account)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_org_at", "org_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), nullable=True)
    actor: Mapped[str] = mapped_column(String(254))  # e-mail | cli:<os user> | scheduler
    action: Mapped[str] = mapped_column(String(64))  # login | login_failed | export | run_triggered | ...
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, redacted; never a secret
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)


# --- tenancy (migration 0005) ------------------------------------------------------------------------


class Invitation(Base):
    """A one-time link to join an organisation with a role. Only the SHA-256 of its token is stored."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))  # normalised; only this address can accept it
    role: Mapped[str] = mapped_column(String(16))
    attributes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, given to the membership
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


def configure_models() -> None:
    """Set up the ORM classes' mappers now rather than at the first query: the warm CLI server
    (cli/daemon.py) does it once before forking its commands."""
    configure_mappers()
