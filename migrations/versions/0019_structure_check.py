"""The structure check: each image's 32x32 luma thumbnail, each signature-verified pair's structure agreement.

Revision ID: 0019
Revises: 0018

The colour signature's 16x16 lightness averages away a glyph that differs on one drawing (a folder
with two emblems, a card with another pip): such pairs passed it. The loader now stores a 32x32 luma
thumbnail (images.structure) and dbdedup.structure_check compares the pairs verified by their colour
signatures window by window (pairs.structure); those below verify_settings().min_structure go to the
geometric check, which measures the aligned overlap the same way (verify_reason structure). Images loaded before this revision have no thumbnail: the next `dbdedup
load` fingerprints them again (as it does for orientation variants it did not compute), and until
then their pairs keep their signature verdict (pairs.structure NaN).
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

IMAGE_STRUCTURE = (
    "The image''s luma box-averaged to 32x32 pixels, one byte each, row-major (dbdedup.verify.structure_thumbnail): "
    "the structure check compares signature-verified pairs window by window with it "
    "(dbdedup.verify.structure_agreement). NULL when the image has no colour signature or was loaded before dbdedup "
    "stored it.")
PAIR_STRUCTURE = (
    "For a pair verified by its colour signatures: how alike the two are in local structure "
    "(dbdedup.verify.structure_agreement of images.structure, 5th percentile of the windows'' correlation; about 1 "
    "for the same picture), measured by dbdedup.structure_check; below verify_settings().min_structure the pair goes "
    "back to pending, and the geometric check rejects it (verify_reason structure) unless the two, aligned by their "
    "pixels, agree there. NaN when either image has no thumbnail; NULL until measured or for other pairs.")
REASON = ("The measure that decided: exact, signature, geometry; or, for a rejection, why: low_quality, "
          "no_signature, colour (chroma or tone spread), layout (lightness layout), detail, weak_embedding, "
          "no_geometry, no_overlap{structure}, error: ... NULL while the pair is pending.")
STRUCTURE_REASON = ", structure (another drawing in a region, though the colour signatures agree)"


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.images ADD COLUMN structure bytea")
    op.execute("ALTER TABLE dbdedup.images ALTER COLUMN structure SET STATISTICS 0")
    op.execute("ALTER TABLE dbdedup.pairs ADD COLUMN structure real")
    op.execute(f"COMMENT ON COLUMN dbdedup.images.structure IS '{IMAGE_STRUCTURE}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.structure IS '{PAIR_STRUCTURE}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{REASON.format(structure=STRUCTURE_REASON)}'")
    op.execute("CREATE INDEX pairs_structure_unchecked_idx ON dbdedup.pairs (hash_kind) "
               "WHERE verified AND verify_reason = 'signature' AND structure IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX dbdedup.pairs_structure_unchecked_idx")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{REASON.format(structure='')}'")
    op.execute("ALTER TABLE dbdedup.pairs DROP COLUMN structure")
    op.execute("ALTER TABLE dbdedup.images DROP COLUMN structure")
