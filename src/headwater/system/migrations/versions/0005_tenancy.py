"""Tenancy: many organisations on one install. Each organisation gets the folder of its own project
(NULL: the project this system database belongs to, as in a one-project install) and who created
it; a membership gets row-level attributes (JSON, e.g. {"region": "North"}); invitations by link
(only the SHA-256 of the link's token is stored).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("project_path", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(254), nullable=True))
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(sa.Column("attributes", sa.Text, nullable=True))
    op.create_table(
        "invitations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("org_id", sa.Integer, sa.ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("attributes", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(254), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("accepted_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("invitations")
    with op.batch_alter_table("memberships") as batch:
        batch.drop_column("attributes")
    with op.batch_alter_table("organisations") as batch:
        batch.drop_column("created_by")
        batch.drop_column("project_path")
