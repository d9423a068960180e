"""Pairs the tone look found no edit for are looked at again, with the wider limits of its cells.

Revision ID: 0026
Revises: 0025

dbdedup.structure_check fits one tone edit to the colour signatures' cells of each aligned pair rejected
for colour, and sends those close to one edit to the geometric check (pairs.tone_fit, revision 0022's
look; NaN where no edit came close). Session 21 widened what close means (dbdedup.verify.TONE_MAX_CELL_RESIDUAL
and TONE_MAX_CELL, 10 and 25 levels -> 12 and 30) and fits the files' pixels at a third side: a brightened
or contrast-edited copy its cells missed before may pass now. Their NaN is cleared, so that the next match,
report or verify measures them again (only the signatures are read; no table changes). Pairs whose files
were already fitted and refused keep their verdict.
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE dbdedup.pairs SET tone_fit = NULL "
               "WHERE verified = false AND verify_reason = 'colour' AND tone_fit = 'NaN'::real")


def downgrade() -> None:
    pass  # (a cleared measure is taken again; nothing to restore)
