"""Loader tables: load runs, images, load errors.

Revision ID: 0001
Revises:
"""

from dbdedup.migrations.sqlstep import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0001_upgrade.sql")


def downgrade() -> None:
    run_sql_file("migrations/0001_downgrade.sql")
