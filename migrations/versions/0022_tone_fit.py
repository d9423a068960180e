"""pairs.tone_fit: pairs rejected for colour that one brightness or contrast edit explains; verify_reason tone.

Revision ID: 0022
Revises: 0021

Clipping at white or black makes a brightness or contrast edit bend the Lab colour signature: a copy
brightened by 30% can be as far from its original in layout and chroma as another colour of one icon,
and the signatures rejected it (colour). dbdedup.structure_check now fits one edit, out = clip(gain *
in + offset) for every channel, to the colour signatures' cells of each aligned pair of colour pictures
rejected for colour (pairs.tone_fit, with its partial index of pairs not measured yet); a pair it explains goes
back to pending, and the geometric check fits the edit to the RGB pixels of the files (verify_reason
tone when it explains them). The column is added empty: pairs rejected before are measured by the next
match, report or verify.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

TONE_FIT = (
    "For an aligned pair of colour pictures rejected for colour by their signatures: the RMS difference (0-255 "
    "levels) of the 8x8 cells of their colour signatures in sRGB (dbdedup.verify.signature_colours) after one "
    "brightness or contrast edit, out = clip(gain * in + offset) for every channel, fitted either way "
    "(dbdedup.verify.tone_fits, measured by dbdedup.structure_check) when they are that close to one edit "
    "(dbdedup.verify.ToneFit.cells_agree): the pair then goes back to pending, and the geometric check fits the "
    "edit to the RGB pixels of the files (verify_reason tone when it explains them, else colour). NaN when no such "
    "edit explains the cells, either picture is greyscale or has no signature, or the pair is not aligned; NULL "
    "until measured or for other pairs.")
REASON = (
    "The measure that decided: exact, signature, geometry, dense (a flat picture aligned by its pixels), tone (one "
    "brightness or contrast edit maps the RGB pixels of one onto the other); or, for a rejection, why: low_quality, "
    "no_signature, colour (chroma or tone spread), layout (lightness layout), detail, weak_embedding, no_geometry, "
    "no_overlap, structure (another drawing in a region, though the colour signatures agree), turned (the keypoints "
    "align the two only turned by a quarter or more while their pHashes agree unturned: another picture drawn "
    "turned), error: ... unchecked: not checked by its pixels because the clusters did not need it (verified false: "
    "it links nothing; a later report checks it when its clusters need it, dbdedup verify --unchecked checks it). "
    "NULL while the pair is pending.")


def _revision(name: str):
    """The module of an earlier revision (its comment texts), from its file beside this one."""
    spec = importlib.util.spec_from_file_location(f"revision_{name[:4]}", Path(__file__).with_name(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.pairs ADD COLUMN tone_fit real")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.tone_fit IS '{TONE_FIT}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{REASON}'")
    op.execute("CREATE INDEX pairs_tone_unmeasured_idx ON dbdedup.pairs (hash_kind) "
               "WHERE verified = false AND verify_reason = 'colour' AND tone_fit IS NULL")


def downgrade() -> None:
    before = _revision("0021_fine_structure.py")
    op.execute("DROP INDEX dbdedup.pairs_tone_unmeasured_idx")
    op.execute("ALTER TABLE dbdedup.pairs DROP COLUMN tone_fit")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{before._reason(before.TURNED)}'")
