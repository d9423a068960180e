"""pairs.verify_reason converted: a greyscale copy verified by its colour original's conversion, pixel by pixel;
the pairs refused for colour are given their verdicts again.

Revision ID: 0031
Revises: 0030

dbdedup.verify_pairs (sql/verification.sql) compares a greyscale picture with a colour one's greyscale conversion
by their signatures, whose cells average the colours before converting them: a greyscale copy of a saturated
picture (a flag, a card's red pips) was refused for colour even at pHash 0. Such a pair, when the two agree in
lightness layout and detail, is now left pending, and the check by pixels verifies it when the greyscale picture
is the other's Rec. 601 luma (dbdedup.verify.converted_verdict): verify_reason converted. Every pair refused for
colour is made pending again, so that its next match or report judges it by today's rules (the SQL step gives
most of them the same verdict at once; telling the greyscale ones apart here would need a join that a Citus
cluster does not run in an UPDATE). The column's comment names the new reason (edited in place, as
sql/tables.sql has it). The downgrade restores the comment only.
"""

import importlib

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

COMMENTS = (
    ("pairs", "verify_reason", "tables comes out as its pixels), pixels",
     "tables comes out as its pixels), converted (one is greyscale, and the other's greyscale conversion, each "
     "pixel's Rec. 601 luma, comes out as its pixels), pixels"),
)


def _edit_comments(forward: bool) -> None:
    # revision 0028's comment editor, from the package that ships the migrations
    importlib.import_module("dbdedup.migrations.versions.0028_low_signal_index").edit_comments(COMMENTS, forward)


def upgrade() -> None:
    op.execute("UPDATE dbdedup.pairs SET verified = NULL, verify_score = NULL, verify_reason = NULL "
               "WHERE verify_reason = 'colour'")
    _edit_comments(True)


def downgrade() -> None:
    _edit_comments(False)
