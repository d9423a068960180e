"""pairs.detail_gap: a pair verified by its signatures unturned, looked at in colour at its own scale when its
luma thumbnails stray from one tone edit.

Revision ID: 0037
Revises: 0036

One card rank in two suits, or in two decks whose pips are green in one and black in the other, one flag's stripes
in other colours: their colour signatures and their structure agree as a copy's do, and they were clustered (the
lone-copies draws of bench/accuracy). dbdedup.structure_check now also measures, for each signature-verified pair
compared unturned and whole, how far its 64x64 luma thumbnails stray from one brightness or contrast edit
(dbdedup.verify.detail_gaps_many): above verify_settings().detail_gate the pair goes back to pending, and the check by
pixels refuses it (detail) when the two, compared in colour at their own scale, are apart in a place that neither
one tone edit nor a see-through overlay explains, and their keypoints align them in place. The column is added
empty, and the signature-verified unturned pairs have their structure measure cleared, so that the next match,
report or verify measures them again (the same structure comes out, and the gap with it).
"""

from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

DETAIL_GAP = (
    "For a pair verified by its colour signatures unturned and whole: how far its two images.structure thumbnails "
    "(64x64 luma) stray from one brightness or contrast edit, in levels RMS (dbdedup.verify.detail_gaps_many, "
    "measured by dbdedup.structure_check). Above verify_settings().detail_gate the pair goes back to pending, and the "
    "check by pixels compares the two in colour at their own scale (up to 64 pixels): apart somewhere beyond what one "
    "tone edit explains (another suit on a card, other pips), neither one tone edit nor an overlay (see-through, or "
    "a mark painted in one colour), and aligned in place by their keypoints, it is refused (verify_reason detail); "
    "else the signatures'' verdict stands. NaN when the pair is compared turned or trimmed or an image has no 64x64 "
    "thumbnail; NULL until measured or for other pairs.")


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.pairs ADD COLUMN detail_gap real")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.detail_gap IS '{DETAIL_GAP}'")
    op.execute("UPDATE dbdedup.pairs SET structure = NULL "
               "WHERE verified AND verify_reason = 'signature' AND transform IS NULL")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.pairs DROP COLUMN detail_gap")
