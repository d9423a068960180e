"""Comments on the id sequences, and verdicts.given_on's: exported and imported now.

Revision ID: 0038
Revises: 0037

Every public object of schema dbdedup says what it is in psql, but the sequences of the identity columns
(images_id_seq, load_runs_id_seq, load_errors_id_seq, verdicts_id_seq) had no comment. And `dbdedup verdicts
export` and `import` now carry given_on (a take-out verdict round-tripped through a file still reviews the rest of
its cluster), which the column's comment said an import left NULL. Comments only: no data changes.
"""

import importlib

from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None

# (sequence, comment): as sql/tables.sql has them
SEQUENCES = (
    ("load_runs_id_seq", "Numbers dbdedup.load_runs (its identity column id): one a load."),
    ("images_id_seq",
     "Numbers dbdedup.images (its identity column id: the image id of the other tables, the functions and commands)."),
    ("load_errors_id_seq", "Numbers dbdedup.load_errors (its identity column id)."),
    ("verdicts_id_seq",
     "Numbers dbdedup.verdicts (its identity column id: the id `dbdedup verdicts list` shows and `remove` takes)."),
)

# (table, column, text before, text after) of the comments edited
COMMENTS = (
    ("verdicts", "given_on",
     "as they were before it changed them; NULL for one given elsewhere (verdicts add, import). A cluster",
     "as they were before it changed them (verdicts export writes them, import takes them back); NULL for one given "
     "elsewhere (verdicts add, or imported from a file without them). A cluster"),
)


def _edit_comments(forward: bool) -> None:
    # (the helper of revision 0028, whose module name starts with a digit)
    importlib.import_module("dbdedup.migrations.versions.0028_low_signal_index").edit_comments(COMMENTS, forward)


def upgrade() -> None:
    for name, text in SEQUENCES:
        op.execute(f"COMMENT ON SEQUENCE dbdedup.{name} IS '{text}'")
    _edit_comments(True)


def downgrade() -> None:
    for name, _ in SEQUENCES:
        op.execute(f"COMMENT ON SEQUENCE dbdedup.{name} IS NULL")
    _edit_comments(False)
