"""pairs.overlay_cells: aligned pairs the signatures rejected for colour or layout that one overlay may explain.

Revision ID: 0025
Revises: 0024

A watermark over a dark or a flat picture moves its colour signature as far as another colour or another
layout would, and dbdedup.verify_pairs rejected such copies before any file was read: the workers' overlay
check (verify_reason overlay, revision 0024) never saw them. dbdedup.structure_check now compares the 16x16
lightness cells of each aligned pair rejected for colour or layout (dbdedup.verify.overlay_cells_agree: few
cells changed, nearly all the same way); a pair whose cells agree goes back to pending (pairs.overlay_cells
true, with its partial index of pairs not measured yet), and the geometric check tries the overlay on the
files' pixels. The column is added empty: pairs rejected before are measured by the next match, report or
verify.
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

OVERLAY_CELLS = (
    "For an aligned pair rejected for colour or layout by its colour signatures: whether their 16x16 lightness "
    "cells differ as one see-through white or black overlay would make them, a few cells changed and nearly all "
    "the same way (dbdedup.verify.overlay_cells_agree, measured by dbdedup.structure_check). True sends the pair "
    "back to pending, and the geometric check tries the overlay on the files'' pixels (verify_reason overlay when "
    "it explains them, else the refusal again). False when the cells do not agree, the pair is not aligned or an "
    "image has no signature, or the geometric check gave the refusal (it tries the overlay itself); NULL until "
    "measured or for other pairs.")


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.pairs ADD COLUMN overlay_cells boolean")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.overlay_cells IS '{OVERLAY_CELLS}'")
    op.execute("CREATE INDEX pairs_overlay_unmeasured_idx ON dbdedup.pairs (hash_kind) "
               "WHERE verified = false AND verify_reason IN ('colour', 'layout') AND overlay_cells IS NULL")


def downgrade() -> None:
    op.execute("DROP INDEX dbdedup.pairs_overlay_unmeasured_idx")
    op.execute("ALTER TABLE dbdedup.pairs DROP COLUMN overlay_cells")
