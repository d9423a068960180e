"""Transform variants (orientations, trimmed borders) and embeddings in pgvector; clustering rules.

Revision ID: 0003
Revises: 0002
"""

from dbdedup.migrations.sqlstep import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("migrations/0003_upgrade.sql")


def downgrade() -> None:
    run_sql_file("migrations/0003_downgrade.sql")
    # 0003 replaced 0002's clustering functions and views: put 0002 back whole (pairs and
    # clusters are derived data, rebuilt by the next match)
    run_sql_file("migrations/0002_downgrade.sql")
    run_sql_file("migrations/0002_upgrade.sql")
