"""The structure thumbnails of new rows are stored uncompressed.

Revision ID: 0027
Revises: 0026

images.structure (the 64x64 luma thumbnail, 4,096 bytes, revision 0021) always goes out of line, to the
table's TOAST, and PostgreSQL first tried to compress it with pglz. Measured on whole loads (server CPU, this
revision against the one before, alternating): the 10,000 small JPEGs of bench/e2e_bench.py, where nothing
compressed, 2.8 s against 3.4 s; the accuracy set's 10,800 photos and drawings, where the drawings' thumbnails
halved, 2.9-3.3 s against 4.4-5.5 s, and dbdedup.images 82 MB against 45 MB (about 3.4 kB a row more).
Storage EXTERNAL skips the attempt. Only the column's storage changes: stored values stay as they are
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
