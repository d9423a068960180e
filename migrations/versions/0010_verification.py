"""Verification signals: each image's hash quality and colour signature, each pair's verdict.

Revision ID: 0010
Revises: 0009

Images loaded before this revision have no quality or colour signature (NULL); the
verification step computes them from the file when it first needs them.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

IMAGE_COMMENTS = {
    "quality": "PDQ-style hash quality 0-100 of the decoded image (dbdedup.verify.quality): the amount of "
               "gradient detail. Below the verification minimum an image has no hash signal of its own and "
               "matches only as an exact copy. NULL until computed.",
    "colour_signature": "The image''s colour layout (dbdedup.verify.colour_signature): CIE Lab lightness of a "
                        "16x16 grid, then the a and b chroma of an 8x8 grid, 384 values, row-major cells. Pairs "
                        "are verified by comparing these in SQL (dbdedup.signature_distance). NULL until computed "
                        "or when it could not be (see signature_error).",
    "signature_error": "Why the image has no colour signature (it then matches only as an exact copy); NULL "
                       "when it has one or has not been tried.",
}
PAIR_COMMENTS = {
    "verified": "Whether verification found the two the same picture: only verified pairs link images in "
                "clusters. NULL until the pair is verified.",
    "verify_score": "How alike verification found the two, 0-1 (1 = identical by the measure named in "
                    "verify_reason).",
    "verify_reason": "The measure that decided: exact, signature, geometry; or, for a rejection, why: "
                     "low_quality, colour, detail, no_geometry, no_overlap, no_signature, error: ...",
}


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.images ADD COLUMN quality smallint, ADD COLUMN colour_signature real[], "
               "ADD COLUMN signature_error text")
    op.execute("ALTER TABLE dbdedup.pairs ADD COLUMN verified boolean, ADD COLUMN verify_score real, "
               "ADD COLUMN verify_reason text")
    for column, comment in IMAGE_COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN dbdedup.images.{column} IS '{comment}'")
    for column, comment in PAIR_COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN dbdedup.pairs.{column} IS '{comment}'")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.pairs DROP COLUMN verified, DROP COLUMN verify_score, DROP COLUMN verify_reason")
    op.execute("ALTER TABLE dbdedup.images DROP COLUMN quality, DROP COLUMN colour_signature, "
               "DROP COLUMN signature_error")
