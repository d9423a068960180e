"""image_embeddings.crop_windows: each picture's window pHashes, where a crop of it finds it.

Revision ID: 0034
Revises: 0033

A copy cropped to three quarters or half of the picture is far from its original by every whole-frame
hash; its pHash is near the pHash of the window of the original it was cut from (dbdedup/crop_windows.py).
The windows were computed for the keepers of large clusters only, at each report, so a lone crop (a photo
and its one crop, the common case) was found only when the embedding happened to pair it. Each image now
keeps its windows beside its embedding, and dbdedup.match_embeddings compares each image's pHash with the
windows of its nearest embedding neighbours. The column exists only where dbdedup.image_embeddings does
(servers with pgvector). It is added empty: the load's workers compute the windows of the files they read,
and the next load writes those of the rows loaded before from their stored thumbnails (no file is read).
The pairs such a search finds have transform crop_window (the comments of pairs.transform and
transform_distance say so).
"""

import importlib

from alembic import op
from sqlalchemy import text

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

CROP_WINDOWS = (
    "The pHashes of the picture''s windows (dbdedup/crop_windows.py: squares of half and three quarters of the stored "
    "64x64 luma thumbnail, 34 of them, signed as images.phash): a copy cropped so is within a few bits of one, and "
    "dbdedup.match_embeddings compares each image''s pHash with the windows of its nearest embedding neighbours. "
    "Empty when the image has no 64x64 thumbnail; NULL until written with the embedding after the load.")

# (table, column, text before, text after) of the comments edited
COMMENTS = (
    ("pairs", "transform", "by their size (transform_distance 0). NULL when",
     "by their size (transform_distance 0); crop_window when dbdedup.match_embeddings found one image's pHash near a "
     "window of the other, one of its nearest embedding neighbours (image_embeddings.crop_windows: a crop; "
     "transform_distance 0). NULL when"),
    ("pairs", "transform_distance", "0 for keypoints, linked and same_size.",
     "0 for keypoints, linked, same_size and crop_window."),
)


def _edit_comments(forward: bool) -> None:
    # (the helper of revision 0028, whose module name starts with a digit)
    importlib.import_module("dbdedup.migrations.versions.0028_low_signal_index").edit_comments(COMMENTS, forward)


def upgrade() -> None:
    _edit_comments(True)
    if op.get_bind().execute(text("SELECT to_regclass('dbdedup.image_embeddings') IS NULL")).scalar():
        return  # hash-only mode: dbdedup.enable_embeddings() makes the table with the column
    op.execute("ALTER TABLE dbdedup.image_embeddings ADD COLUMN crop_windows bigint[]")
    op.execute(f"COMMENT ON COLUMN dbdedup.image_embeddings.crop_windows IS '{CROP_WINDOWS}'")


def downgrade() -> None:
    _edit_comments(False)
    if op.get_bind().execute(text("SELECT to_regclass('dbdedup.image_embeddings') IS NULL")).scalar():
        return
    op.execute("ALTER TABLE dbdedup.image_embeddings DROP COLUMN crop_windows")
