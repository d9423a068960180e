"""The structure thumbnail at 64x64 (the structure check also compares signature-verified pairs there);
verify_reason turned.

Revision ID: 0021
Revises: 0020

Star rings of other point counts (44 and 47, 69 and 95): at 32x32 such pictures agree as well as
copies do, and their colour signatures agree too. The loader now stores
the luma thumbnail at 64x64 (images.structure, 4 kB; the 32x32 one is its 2x2 means), and
dbdedup.structure_check measures signature-verified pairs at both sizes (pairs.structure keeps the
64x64 measure when it fails). Only comments change here: images loaded before keep their 32x32
thumbnail (compared at 32x32 only) until they are loaded again. The geometric check's new rejection,
turned (the keypoints align the two only turned by a quarter or more while their pHashes agree
unturned: an arrow pointing up and one pointing down), is named in pairs.verify_reason's comment.
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

IMAGE_STRUCTURE = (
    "The image''s luma box-averaged to 64x64 pixels (32x32 for images loaded before migration 0021), one byte each, "
    "row-major (dbdedup.verify.structure_thumbnail): the structure check compares signature-verified pairs window by "
    "window with it (dbdedup.verify.structure_agreement) at 32x32 (its 2x2 means) and at 64x64. NULL when the image "
    "has no colour signature or was loaded before dbdedup stored it.")
PAIR_STRUCTURE = (
    "For a pair verified by its colour signatures: how alike the two are in local structure "
    "(dbdedup.verify.structure_agreement of images.structure at 32x32, 5th percentile of the windows'' correlation; "
    "about 1 for the same picture; or, when both images have the 64x64 thumbnail and its 10th percentile is below "
    "verify_settings().min_signature_fine_structure, that), measured by dbdedup.structure_check; below "
    "verify_settings().min_signature_structure the pair goes back to pending, and the geometric check rejects it "
    "(verify_reason structure) unless the two, aligned by their pixels, agree there. NaN when either image has no "
    "thumbnail; NULL until measured or for other pairs.")

TURNED = (", turned (the keypoints align the two only turned by a quarter or more while their pHashes agree unturned: "
          "another picture drawn turned)")


def _revision(name: str):
    """The module of an earlier revision (its comment texts), from its file beside this one."""
    spec = importlib.util.spec_from_file_location(f"revision_{name[:4]}", Path(__file__).with_name(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reason(turned: str) -> str:
    before = _revision("0020_unchecked_pairs.py")
    return before.REASON.replace("error: ...", turned[2:] + ", error: ..." if turned else "error: ...").format(
        unchecked=before.UNCHECKED)


def upgrade() -> None:
    op.execute(f"COMMENT ON COLUMN dbdedup.images.structure IS '{IMAGE_STRUCTURE}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.structure IS '{PAIR_STRUCTURE}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{_reason(TURNED)}'")


def downgrade() -> None:
    # the comments of revisions 0019 and 0020, from their own text
    before = _revision("0019_structure_check.py")
    op.execute(f"COMMENT ON COLUMN dbdedup.images.structure IS '{before.IMAGE_STRUCTURE}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.structure IS '{before.PAIR_STRUCTURE}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{_reason('')}'")
