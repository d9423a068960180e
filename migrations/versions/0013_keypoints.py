"""Keypoint keys: images.keypoint_keys, pairs.shared_keys and the keypoints signal's state.

Revision ID: 0013
Revises: 0012

Images loaded before this revision have no keys (NULL): `dbdedup load --keypoints` computes them
for the files it finds without, and matching proposes no keypoint pairs for them until then.
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COMMENTS = {
    "images.keypoint_keys":
        "Keypoint keys of the image (dbdedup.keypoints: ORB descriptors cut into 6 bands of 24 bits, each key its "
        "band number and bits), sorted and distinct, stored by `dbdedup load --keypoints`: images sharing many keys "
        "are candidate pairs for crops and rotations (dbdedup.match_keypoints). Empty when the image has no corners; "
        "NULL when not computed.",
    "pairs.shared_keys":
        "Keypoint keys the two images share (images.keypoint_keys) when dbdedup.match_keypoints found the pair; NULL "
        "otherwise. A pair only the keys found has transform ''keypoints'' (transform_distance 0) and is verified by "
        "the geometric check alone.",
    "pairs.transform":
        "Which variant matched when the pair was found by transform matching: image_b looks like image_a after this "
        "(flip_h, rotate_90, ..., trim, trim+flip_h, ...); keypoints when only shared keypoint keys found it (a crop, a "
        "rotation: see shared_keys). NULL when no variant is closer than the stored hashes.",
    "pairs.transform_distance": "Hamming distance at that variant (smaller than distance); 0 for keypoints.",
}
SIGNAL_STATE_COMMENT = (
    "Per signal (transforms, embeddings, keypoints): pairs.transform_distance is complete up to max_distance, "
    "pairs.similarity down to min_similarity (k = neighbours), and pairs.shared_keys for the key setting named in "
    "method, for images with change_seq <= matched_seq. base_full_match_at is the pHash match_state.full_match_at the "
    "signal was computed on: a full pHash re-match clears the pairs, so the signal starts over.")


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.images ADD COLUMN keypoint_keys integer[]")
    op.execute("ALTER TABLE dbdedup.pairs ADD COLUMN shared_keys smallint")
    op.execute("ALTER TABLE dbdedup.signal_state DROP CONSTRAINT signal_state_signal_check, "
               "ADD CONSTRAINT signal_state_signal_check CHECK (signal IN ('transforms', 'embeddings', 'keypoints'))")
    for column, comment in COMMENTS.items():
        op.execute(f"COMMENT ON COLUMN dbdedup.{column} IS '{comment}'")
    op.execute(f"COMMENT ON TABLE dbdedup.signal_state IS '{SIGNAL_STATE_COMMENT}'")


def downgrade() -> None:
    op.execute("DELETE FROM dbdedup.signal_state WHERE signal = 'keypoints'")
    op.execute("DELETE FROM dbdedup.pairs WHERE transform = 'keypoints' AND similarity IS NULL")
    op.execute("UPDATE dbdedup.pairs SET transform = NULL, transform_distance = NULL WHERE transform = 'keypoints'")
    op.execute("ALTER TABLE dbdedup.signal_state DROP CONSTRAINT signal_state_signal_check, "
               "ADD CONSTRAINT signal_state_signal_check CHECK (signal IN ('transforms', 'embeddings'))")
    op.execute("ALTER TABLE dbdedup.pairs DROP COLUMN shared_keys")
    op.execute("ALTER TABLE dbdedup.images DROP COLUMN keypoint_keys")
