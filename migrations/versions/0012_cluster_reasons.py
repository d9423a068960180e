"""cluster_assignments.verify_reason and verify_score: why each member is in its cluster.

Revision ID: 0012
Revises: 0011

Clusters built before this revision have no reasons; the next build_clusters gives them.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COMMENTS = {
    "verify_reason": "How the link between the member and its keeper was verified (pairs.verify_reason: exact, "
                     "signature, geometry; reviewer for a pair a reviewer confirmed); NULL for the keeper.",
    "verify_score": "The verification score of that link, 0-1 (pairs.verify_score); NULL for the keeper.",
}


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.cluster_assignments ADD COLUMN verify_reason text, ADD COLUMN verify_score real")
    for column, comment in COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN dbdedup.cluster_assignments.{column} IS '{comment}'")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.cluster_assignments DROP COLUMN verify_reason, DROP COLUMN verify_score")
