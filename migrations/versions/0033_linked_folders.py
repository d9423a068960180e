"""load_runs.linked_folders: the symbolic links to folders a load's walk entered.

Revision ID: 0033
Revises: 0032

A file under a folder link inside a loaded tree is recorded by the link's path, so a reference path naming the
folder the link leads to protected nothing in the clustering (apply, which compares real paths, still left the file
alone, but the report counted it removable and it was not preferred as a keeper). Each load now records the
folder links its walk entered; a reference path is stored with its place under each of them too
(dbdedup.clusters.reference_aliases). Earlier runs' links are not known: the column is added empty, and the next
load of a tree records them.
"""

from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

LINKED_FOLDERS = (
    "Symbolic links to folders, inside the roots, that the walk entered: the files there are recorded under the "
    "link''s path, so a reference path that the link leads into (or to) is stored with that path too.")


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.load_runs ADD COLUMN linked_folders text[] NOT NULL DEFAULT '{}'")
    op.execute(f"COMMENT ON COLUMN dbdedup.load_runs.linked_folders IS '{LINKED_FOLDERS}'")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.load_runs DROP COLUMN linked_folders")
