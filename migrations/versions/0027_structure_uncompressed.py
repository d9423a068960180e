"""The structure thumbnails of new rows are stored uncompressed.

Revision ID: 0027
Revises: 0026

images.structure (the 64x64 luma thumbnail, 4,096 bytes, revision 0021) always goes out of line, to the
table's TOAST, and PostgreSQL first tried to compress it with pglz. On the 10,000 small JPEGs of
bench/e2e_bench.py nothing compressed and the attempt still cost about 65 us a row of the load's upserts;
on the accuracy set's drawings it halved them, at 135 us a row. Storage EXTERNAL skips the attempt (a row
of drawings takes about 3.7 kB more). Only the column's storage changes: stored values stay as they are
(compressed or not, both read the same), and rows written from now on are stored uncompressed.
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.images ALTER COLUMN structure SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.images ALTER COLUMN structure SET STORAGE EXTENDED")
