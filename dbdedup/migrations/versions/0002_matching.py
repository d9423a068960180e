"""Matching: hash values, value and image pairs, clusters, and the SQL API (match, build_clusters, refresh, similar).

Revision ID: 0002
Revises: 0001
"""

from dbdedup.migrations.sqlstep import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0002_upgrade.sql")


def downgrade() -> None:
    run_sql_file("migrations/0002_downgrade.sql")
