"""image_embeddings.turn_signature: a picture's layout as a turn about its centre leaves it.

Revision ID: 0023
Revises: 0022

A copy turned by 10-20 degrees is far from its original by every hash and by the embedding, so no
signal paired it with its family. dbdedup.propose_keeper_pairs now also searches the nearest turn
signatures (dbdedup/turn_signature.py: rings of the stored luma thumbnail, their means and Fourier
magnitudes) of the images in no large cluster, through a second pgvector index
(image_embeddings_turn_idx). The column exists only where dbdedup.image_embeddings does (servers with
pgvector). It is added empty: the load's workers compute the signatures of the files they read, and
the next load writes those of the rows loaded before from their stored thumbnails (no file is read);
the first report that searches them builds the index (dbdedup.ensure_turn_index).
"""

from alembic import op
from sqlalchemy import text

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

TURN_SIGNATURE = (
    "The picture''s layout as a turn about its centre leaves it (dbdedup.turn_signature: rings of the stored luma "
    "thumbnail, their means and Fourier magnitudes; 132 dimensions, L2-normalised), searched by "
    "dbdedup.propose_keeper_pairs; NULL until written with the embedding after the load.")


def _vector_schema():
    bind = op.get_bind()
    if bind.execute(text("SELECT to_regclass('dbdedup.image_embeddings') IS NULL")).scalar():
        return None
    return bind.execute(text("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                             "WHERE e.extname = 'vector'")).scalar()


def upgrade() -> None:
    schema = _vector_schema()
    if schema is None:  # hash-only mode: dbdedup.enable_embeddings() makes the table with the column
        return
    op.execute(f'ALTER TABLE dbdedup.image_embeddings ADD COLUMN turn_signature "{schema}".vector(132)')
    op.execute(f"COMMENT ON COLUMN dbdedup.image_embeddings.turn_signature IS '{TURN_SIGNATURE}'")


def downgrade() -> None:
    if _vector_schema() is None:
        return
    op.execute("DROP INDEX IF EXISTS dbdedup.image_embeddings_turn_idx")
    op.execute("ALTER TABLE dbdedup.image_embeddings DROP COLUMN turn_signature")
