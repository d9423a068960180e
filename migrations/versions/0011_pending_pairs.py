"""Pairs pending verification found by an index, and the verdict reasons the SQL step gives.

Revision ID: 0011
Revises: 0010

Every match asks which pairs are still pending (pairs.verified IS NULL): dbdedup.verify_pairs
reads them, the geometric check streams them, and ensure_clusters counts them before building
clusters. A partial index holds only those (none, once every pair has a verdict), so the
question costs nothing on a database whose pairs are all verified instead of a scan of every
pair.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

REASON = ("The measure that decided: exact, signature, geometry; or, for a rejection, why: low_quality, "
          "no_signature, colour (chroma or tone spread), layout (lightness layout), detail, weak_embedding, "
          "no_geometry, no_overlap, error: ... NULL while the pair is pending.")
OLD_REASON = ("The measure that decided: exact, signature, geometry; or, for a rejection, why: low_quality, colour, "
              "detail, no_geometry, no_overlap, no_signature, error: ...")


def upgrade() -> None:
    op.execute("CREATE INDEX pairs_pending_idx ON dbdedup.pairs (hash_kind) WHERE verified IS NULL")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{REASON}'")


def downgrade() -> None:
    op.execute("DROP INDEX dbdedup.pairs_pending_idx")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{OLD_REASON}'")
