"""The lsh method's work table: dbdedup.match_work.

Revision ID: 0014
Revises: 0013

A full lsh match joins the distinct values with themselves once per table (hundreds of times at
1M values and threshold 10); a one-column copy of them makes each join cheaper than scanning
dbdedup.hash_values. Unlogged, so parallel workers can read it (they cannot read a temporary
table). Empty between matches.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

COMMENT = ("Work table of a full lsh match (dbdedup.match_values_lsh): the distinct values being matched, one bigint "
           "a row, so that its hash joins scan a narrow table (unlogged: parallel workers can read it, unlike a "
           "temporary table). Filled and emptied within the match.")


def upgrade() -> None:
    op.execute("CREATE UNLOGGED TABLE dbdedup.match_work (value bigint NOT NULL)")
    op.execute(f"COMMENT ON TABLE dbdedup.match_work IS '{COMMENT}'")


def downgrade() -> None:
    op.execute("DROP TABLE dbdedup.match_work")
