"""cluster_parameters.pending_at_build, and keeper pairs through member pairs that only failed to align.

Revision ID: 0017
Revises: 0016

A build from SQL (dbdedup.refresh(), from pg_cron) leaves the pairs the geometric check must decide
pending; `dbdedup verify` gives them verdicts later, which changed nothing the next command could see,
so it kept the clusters built before. dbdedup.build_clusters now records how many pairs of its hash
kind were pending, and dbdedup.clusters.ensure_clusters builds again when that is above 0.
dbdedup.propose_keeper_pairs also proposes through a member pair rejected no_geometry: the pairs.transform
comment says so.
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

PENDING = (
    "Pairs of the clustering''s hash kind still pending (verified IS NULL, linking nothing) when it was built (a build from "
    "SQL, such as refresh(), leaves the ones the geometric check must decide): above 0, the clusters are built again "
    "by the next command, since `dbdedup verify` may have given those pairs verdicts since.")
TRANSFORM = (
    "Which variant matched when the pair was found by transform matching: image_b looks like image_a after this "
    "(flip_h, rotate_90, ..., trim, trim+flip_h, ...); keypoints when only shared keypoint keys found it (a crop, a "
    "rotation: see shared_keys); linked when dbdedup.propose_keeper_pairs proposed it (a keeper and an image verified "
    "with one of its members{more}). NULL when no variant is closer than the stored hashes.")
MORE = ", or whose pair with one only failed to align by keypoints"


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.cluster_parameters ADD COLUMN pending_at_build bigint NOT NULL DEFAULT 0")
    op.execute(f"COMMENT ON COLUMN dbdedup.cluster_parameters.pending_at_build IS '{PENDING}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.transform IS '{TRANSFORM.format(more=MORE)}'")


def downgrade() -> None:
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.transform IS '{TRANSFORM.format(more='')}'")
    op.execute("ALTER TABLE dbdedup.cluster_parameters DROP COLUMN pending_at_build")
