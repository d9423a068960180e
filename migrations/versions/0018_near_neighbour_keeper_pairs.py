"""Keeper pairs through an image's nearest embedding neighbours: the pairs.transform comment says so.

Revision ID: 0018
Revises: 0017

dbdedup.propose_keeper_pairs also proposes the keeper pair of an image in no cluster that has an image
of the cluster among its nearest embedding neighbours (below the pairing floor). No table changes.
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TRANSFORM = (
    "Which variant matched when the pair was found by transform matching: image_b looks like image_a after this "
    "(flip_h, rotate_90, ..., trim, trim+flip_h, ...); keypoints when only shared keypoint keys found it (a crop, a "
    "rotation: see shared_keys); linked when dbdedup.propose_keeper_pairs proposed it (a keeper and an image verified "
    "with one of its members, or whose pair with one only failed to align by keypoints{more}). NULL when no variant "
    "is closer than the stored hashes.")
MORE = ", or an image in no cluster with one of its images among its nearest embedding neighbours"


def upgrade() -> None:
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.transform IS '{TRANSFORM.format(more=MORE)}'")


def downgrade() -> None:
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.transform IS '{TRANSFORM.format(more='')}'")
