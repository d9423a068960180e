"""Pairs of two greyscale pictures rejected for colour go to the check by pixels whatever their cells.

Revision ID: 0039
Revises: 0038

dbdedup.structure_check fits one tone edit to the colour signatures' cells of each aligned pair rejected for
colour, and sends those close to one edit to the geometric check (pairs.tone_fit; NaN where no edit came close).
Since session 55 a pair of two greyscale pictures goes there whatever its cells: a greyscale drawing brightened
until its light greys clip bends its cells past any line, where one line fits the files' pixels. The NaN of
the pairs rejected for colour is cleared, as revision 0026 did, so that the next match, report or verify
measures them again (only the signatures are read), and the column's comment says what the measure is now.
"""

import importlib

from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

# (table, column, text before, text after) of the comments edited
COMMENTS = (
    ("pairs", "tone_fit", "For an aligned pair of colour pictures rejected for colour",
     "For an aligned pair rejected for colour"),
    ("pairs", "tone_fit", "(dbdedup.verify.ToneFit.cells_agree): the pair then goes back to pending",
     "(dbdedup.verify.ToneFit.cells_agree), or whatever their distance when both pictures are greyscale (RMS chroma "
     "under dbdedup.verify_settings().grey_chroma: a clipped outline bends a drawing's cells past any line): the pair "
     "then goes back to pending"),
    ("pairs", "tone_fit", "NaN when no such edit explains the cells, either picture is greyscale or has no signature",
     "NaN when no such edit explains the cells of two pictures not both greyscale, either picture has no signature"),
)


def _edit_comments(forward: bool) -> None:
    # (the helper of revision 0028, whose module name starts with a digit)
    importlib.import_module("dbdedup.migrations.versions.0028_low_signal_index").edit_comments(COMMENTS, forward)


def upgrade() -> None:
    op.execute("UPDATE dbdedup.pairs SET tone_fit = NULL "
               "WHERE verified = false AND verify_reason = 'colour' AND tone_fit = 'NaN'::real")
    _edit_comments(True)


def downgrade() -> None:
    _edit_comments(False)  # (a cleared measure is taken again; nothing to restore)
