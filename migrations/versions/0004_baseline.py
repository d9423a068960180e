"""Baseline: the tables as they were when the SQL moved to the top-level sql/ folder.

Revision ID: 0004
Revises: -

Databases made before that carry revision 0004 and have exactly these tables (they were built by
four migrations, squashed here). A new database is made from sql/tables.sql and stamped with the
head revision (dbdedup.schema), so this revision never runs: it is the root that later
migrations upgrade from. tests/data/db_0004.sql.gz is such a database.
"""

from dbdedup.errors import DbdedupError

revision = "0004"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    raise DbdedupError("the baseline migration does not run: new databases are made from sql/tables.sql",
                       hint="let dbdedup make the database (any command, or `dbdedup migrate`)")


def downgrade() -> None:
    raise DbdedupError("a database cannot go below the baseline migration (0004)",
                       hint="DROP SCHEMA dbdedup CASCADE removes everything dbdedup made, to start again")
