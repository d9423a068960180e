"""images.phash_variants' comment: 15 values at most, not 16.

Revision ID: 0035
Revises: 0034

The 7 other orientations, then (when uniform borders were trimmed) the trimmed picture's pHash and its 7
orientations: 15 values. The comment an analyst reads in psql said 16; dbdedup.lookup now refuses a variants
array of another length than these, so the comment should count them right.
"""

import importlib

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

# (table, column, text before, text after) of the comments edited
COMMENTS = (
    ("images", "phash_variants", "7 orientations (16 values in all)", "7 orientations (15 values in all)"),
)


def _edit_comments(forward: bool) -> None:
    # (the helper of revision 0028, whose module name starts with a digit)
    importlib.import_module("dbdedup.migrations.versions.0028_low_signal_index").edit_comments(COMMENTS, forward)


def upgrade() -> None:
    _edit_comments(True)


def downgrade() -> None:
    _edit_comments(False)
