"""An aligned pair apart only in its lightness layout is no longer refused by the SQL step: those verdicts are
given again.

Revision ID: 0030
Revises: 0029

dbdedup.verify_pairs (sql/verification.sql) refused an aligned pair whose signatures' lightness layouts were
apart beyond verify_settings().hopeless (verify_reason layout). A copy turned by 5-10 degrees, or cropped a
little, at a close pHash is that far (its new corners, its cut edges): on the accuracy set the geometric check
verifies 133 of the 180 copy pairs so refused, and none of the 433 look-alike pairs (bench/accuracy/layout_study.py
--replay). The SQL step now
leaves such pairs pending for the geometric check, and nothing gives the reason layout any more: the pairs refused
so are made pending again (their next match or report judges them, or dbdedup verify), and the reason leaves the
column's comment (edited in place, as sql/tables.sql has it). The downgrade restores the comment only.
"""

import importlib

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

COMMENTS = (
    ("pairs", "verify_reason", "colour (chroma or tone spread), layout (lightness layout), detail",
     "colour (chroma or tone spread), detail"),
)


def _edit_comments(forward: bool) -> None:
    # revision 0028's comment editor, from the package that ships the migrations
    importlib.import_module("dbdedup.migrations.versions.0028_low_signal_index").edit_comments(COMMENTS, forward)


def upgrade() -> None:
    op.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL "
               "WHERE verify_reason = 'layout'")
    _edit_comments(True)


def downgrade() -> None:
    _edit_comments(False)
