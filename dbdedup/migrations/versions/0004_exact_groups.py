"""Exact copies stored as stars in dbdedup.pairs; clusters built over exact groups.

Revision ID: 0004
Revises: 0003
"""

from dbdedup.migrations.sqlstep import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0004_upgrade.sql")


def downgrade() -> None:
    run_sql_file("migrations/0004_downgrade.sql")
