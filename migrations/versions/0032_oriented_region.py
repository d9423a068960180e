"""pairs.region: a pair compared under a flip or a turn, told from a mirror drawn again by its least alike region.

Revision ID: 0032
Revises: 0031

A picture and its mirror drawn again (tuxpaint's dreidel mirrored with its letter still readable, wesnoth's bat
mirrored as a zombie bat) agree in colour signature and in structure percentiles as a flipped copy does, and their
families merged. dbdedup.structure_check now also measures, for each signature-verified pair compared under a flip
or a turn, its least alike region where both pictures are drawn (dbdedup.verify.region_agreements, from the stored
64x64 thumbnails): below verify_settings().min_oriented_region the pair goes back to pending, and the check by
pixels measures the region again from the files. The column is added empty; the signature-verified pairs found
through an orientation variant have their structure measure cleared, so that the next match, report or verify
measures both (the same structure comes out, and the region with it). A pair found through a trimmed variant
under a flip or a turn (trim+flip_h, ...) is no longer verified by the whole signatures in SQL: the check by
pixels decides it, with the region of the pictures trimmed; those verified so are made pending again.
"""

from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

REGION = (
    "For a pair verified by its colour signatures in the orientation of a flip or a turn: how alike the two are "
    "in their least alike region (dbdedup.verify.region_agreements of images.structure at 64x64: the lowest mean "
    "agreement of 2x2 neighbouring windows where both pictures are drawn; about 1 for a flipped or turned copy, "
    "low for a picture and its mirror drawn again, its lettering left readable), measured by "
    "dbdedup.structure_check. Below verify_settings().min_oriented_region the pair goes back to pending, and the "
    "check by pixels measures the region again from the files (verify_reason structure when it differs there too,"
    " else the signatures'' verdict stands). NaN when the pair is compared unturned or either image has no 64x64 "
    "thumbnail; NULL until measured or for other pairs.")

ORIENTATIONS = "('flip_h', 'flip_v', 'rotate_90', 'rotate_180', 'rotate_270', 'transpose', 'transverse')"


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.pairs ADD COLUMN region real")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.region IS '{REGION}'")
    op.execute("UPDATE dbdedup.pairs SET structure = NULL "
               f"WHERE verified AND verify_reason = 'signature' AND transform IN {ORIENTATIONS}")
    op.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL, structure = NULL "
               "WHERE verified AND verify_reason = 'signature' AND transform LIKE 'trim+%'")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.pairs DROP COLUMN region")
