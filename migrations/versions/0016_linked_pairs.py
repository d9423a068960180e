"""Keeper pairs proposed through a verified member: pairs.transform 'linked' (comments only).

Revision ID: 0016
Revises: 0015

dbdedup.propose_keeper_pairs (sql/clusters.sql) stores the pair of a cluster's keeper and an image
verified with one of its members, with transform 'linked' and transform_distance 0, to be checked
like any other pair. No column changes: the two columns' comments say so.
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TRANSFORM = (
    "Which variant matched when the pair was found by transform matching: image_b looks like image_a after this "
    "(flip_h, rotate_90, ..., trim, trim+flip_h, ...); keypoints when only shared keypoint keys found it (a crop, a "
    "rotation: see shared_keys){linked}. NULL when no variant is closer than the stored hashes.")
LINKED = ("; linked when dbdedup.propose_keeper_pairs proposed it (a keeper and an image verified with one of its "
          "members)")
DISTANCE = "Hamming distance at that variant (smaller than distance); 0 for keypoints{linked}."


def _comment(transform: str, distance: str) -> None:
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.transform IS '{transform}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.transform_distance IS '{distance}'")


def upgrade() -> None:
    _comment(TRANSFORM.format(linked=LINKED), DISTANCE.format(linked=" and linked"))


def downgrade() -> None:
    _comment(TRANSFORM.format(linked=""), DISTANCE.format(linked=""))
