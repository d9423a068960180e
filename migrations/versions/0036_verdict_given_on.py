"""verdicts.given_on: the members of the cluster a verdict was given on in `dbdedup review`.

Revision ID: 0036
Revises: 0035

"Apply what I reviewed" counts a cluster whose member the reviewer took out (a not_in_cluster verdict, which
names only that member), but the link from the verdict to the rest of its cluster lived in the review page's
memory: after `dbdedup review` was started again, that cluster silently dropped out of the plan. The page now
stores the SHA-256 of the members of the cluster(s) each verdict was given on with the verdict. Earlier verdicts
are not known to have been given on any cluster: the column is added empty (NULL).
"""

from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

GIVEN_ON = (
    "For a verdict given in `dbdedup review`: the SHA-256 of the members of the cluster(s) it was given on, as they "
    "were before it changed them; NULL for one given elsewhere (verdicts add, import). A cluster that holds nothing "
    "but these counts as reviewed by decided_by (so the rest of a cluster whose member was taken out does), until "
    "the verdict is replaced or forgotten.")


def upgrade() -> None:
    op.execute("ALTER TABLE dbdedup.verdicts ADD COLUMN given_on bytea[]")
    op.execute(f"COMMENT ON COLUMN dbdedup.verdicts.given_on IS '{GIVEN_ON}'")


def downgrade() -> None:
    op.execute("ALTER TABLE dbdedup.verdicts DROP COLUMN given_on")
