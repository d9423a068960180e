"""No planner statistics for images.colour_signature and images.keypoint_keys.

Revision ID: 0015
Revises: 0014

ANALYZE of dbdedup.images (after every load that changes a tenth of it, and by autovacuum) spent
most of its time on these two arrays: the element statistics of 384 reals a row took 1.2 of
1.5 s on 10,000 images. No query filters on their elements (they are read whole by verification
and keypoint matching), so the planner never uses those statistics.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.images ALTER COLUMN colour_signature SET STATISTICS 0, "
               "ALTER COLUMN keypoint_keys SET STATISTICS 0")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.images ALTER COLUMN colour_signature SET STATISTICS -1, "
               "ALTER COLUMN keypoint_keys SET STATISTICS -1")
