"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}

A table change: make the same change in sql/tables.sql (a test compares the two schemas).
Functions and views are not migrated: they are re-applied from sql/ when their text changes.
"""

import sqlalchemy as sa
from alembic import op

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
