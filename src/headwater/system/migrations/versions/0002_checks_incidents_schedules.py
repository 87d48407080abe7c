"""Check results, alert incidents, run attempts, longer triggers (after:<pipeline>) and scheduler state.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
        batch.alter_column("trigger", type_=sa.String(80), existing_type=sa.String(16), existing_nullable=False)
    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("observed", sa.Text, nullable=True),
        sa.Column("expected", sa.Text, nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("sample", sa.Text, nullable=True),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(63), nullable=False),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("opened_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime, nullable=True),
        sa.Column("first_run_id", sa.Integer, nullable=False),
        sa.Column("last_run_id", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False, server_default="1"),
        sa.Index("ix_incidents_open", "project", "pipeline", "closed_at"),
    )
    op.create_table(
        "schedule_state",
        sa.Column("project", sa.String(63), primary_key=True),
        sa.Column("pipeline", sa.String(63), primary_key=True),
        sa.Column("last_fire_time", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("schedule_state")
    op.drop_table("incidents")
    op.drop_table("check_results")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("attempt")
        batch.alter_column("trigger", type_=sa.String(16), existing_type=sa.String(80), existing_nullable=False)
