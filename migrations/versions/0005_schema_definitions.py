"""dbdedup.schema_definitions: which text of the functions and views a database runs.

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
    op.create_table(
        "schema_definitions",
        sa.Column("singleton", sa.Boolean, primary_key=True, server_default=sa.true()),
        sa.Column("checksum", sa.Text, nullable=False),
        sa.Column("applied_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("singleton", name="schema_definitions_singleton_check"),
        schema="dbdedup",
        comment="SHA-256 of the function and view definitions (sql/*.sql but tables.sql) this database runs: when "
        "dbdedup ships other text, every command re-applies them before it starts.",
    )


def downgrade() -> None:
    op.drop_table("schema_definitions", schema="dbdedup")
