"""pairs.verify_reason reencoded: a copy saved as a low-quality JPEG, verified by compressing the other alike.

Revision ID: 0029
Revises: 0028

A JPEG saved at a low quality (10-50) moves colours by whole blocks and hides thin lines from the keypoints
and ECC, so the geometric check refused such copies for colour or no_geometry. Now, for a pair it refuses
so, when one file is a JPEG of estimated quality 50 or less, the other picture is compressed with that
file's quantization tables and subsampling at its size, and the pair is verified when the result comes out
as the JPEG's pixels (dbdedup.verify.reencoded_verdict): verify_reason reencoded. No table changes: the
column's comment names the new reason (edited in place, as sql/tables.sql has it).
"""

import importlib.util
from pathlib import Path

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

COMMENTS = (
    ("pairs", "verify_reason", "a watermark), pixels",
     "a watermark), reencoded (one is a JPEG saved at a low quality, and the other compressed with its quantization "
     "tables comes out as its pixels), pixels"),
)


def _revision_0028():
    """Revision 0028's module (its comment editor), from its file beside this one."""
    path = Path(__file__).with_name("0028_low_signal_index.py")
    spec = importlib.util.spec_from_file_location("revision_0028", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    _revision_0028().edit_comments(COMMENTS, True)


def downgrade() -> None:
    _revision_0028().edit_comments(COMMENTS, False)
