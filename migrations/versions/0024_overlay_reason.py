"""pairs.verify_reason overlay: a watermarked copy, verified by its pixels.

Revision ID: 0024
Revises: 0023

A copy with text or a logo blended over it in white or black is refused by the detail, layout and structure
measures as another glyph on one folder is. The geometric check now verifies an aligned pair it would refuse
for such a region (or could not align) when one picture is the other under one see-through overlay and the
rest agrees by the colour signatures (dbdedup.verify.overlay_verdict): verify_reason overlay. No table
changes: the column's comment names the new reason.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def _revision(name: str):
    """The module of an earlier revision (its comment texts), from its file beside this one."""
    spec = importlib.util.spec_from_file_location(f"revision_{name[:4]}", Path(__file__).with_name(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OVERLAY = ("tone (one brightness or contrast edit maps the RGB pixels of one onto the other), overlay (one is the "
           "other under a see-through white or black overlay, a watermark);")


def upgrade() -> None:
    before = _revision("0022_tone_fit.py").REASON
    tone = "tone (one brightness or contrast edit maps the RGB pixels of one onto the other);"
    assert tone in before
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{before.replace(tone, OVERLAY)}'")


def downgrade() -> None:
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{_revision('0022_tone_fit.py').REASON}'")
