"""Pairs the clusters did not need checked: verify_reason 'unchecked'.

Revision ID: 0020
Revises: 0019

A report checks by their pixels only the pending pairs its clusters need (dbdedup/verify_plan.py:
a member's pairs with the other members of its cluster decide nothing) and marks the others
verified false, verify_reason 'unchecked'; a later plan checks those it then needs, and
`dbdedup verify --unchecked` checks them all. An index finds them.
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

REASON = ("The measure that decided: exact, signature, geometry; or, for a rejection, why: low_quality, "
          "no_signature, colour (chroma or tone spread), layout (lightness layout), detail, weak_embedding, "
          "no_geometry, no_overlap, structure (another drawing in a region, though the colour signatures agree), "
          "error: ...{unchecked} NULL while the pair is pending.")
UNCHECKED = (" unchecked: not checked by its pixels because the clusters did not need it (verified false: it links "
             "nothing; a later report checks it when its clusters need it, dbdedup verify --unchecked checks it).")


PENDING_AT_BUILD = ("Pairs of the clustering''s hash kind still pending (verified IS NULL, linking nothing) when it was "
                    "built (a build from SQL, such as refresh(), leaves the ones the geometric check must decide){plan}: "
                    "above 0, the clusters are built again by the next command, since `dbdedup verify` may have given "
                    "those pairs verdicts since{stopped}.")
PLAN = (", plus the pairs a plan of the checks by pixels (dbdedup/verify_plan.py) took from pending to unchecked "
        "since")
STOPPED = ", or the plan was stopped before its build"


def upgrade() -> None:
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{REASON.format(unchecked=UNCHECKED)}'")
    op.execute("COMMENT ON COLUMN dbdedup.cluster_parameters.pending_at_build IS "
               f"'{PENDING_AT_BUILD.format(plan=PLAN, stopped=STOPPED)}'")
    op.execute("CREATE INDEX pairs_unchecked_idx ON dbdedup.pairs (hash_kind) WHERE verify_reason = 'unchecked'")


def downgrade() -> None:
    op.execute("DROP INDEX dbdedup.pairs_unchecked_idx")
    op.execute(f"COMMENT ON COLUMN dbdedup.pairs.verify_reason IS '{REASON.format(unchecked='')}'")
    op.execute("COMMENT ON COLUMN dbdedup.cluster_parameters.pending_at_build IS "
               f"'{PENDING_AT_BUILD.format(plan='', stopped='')}'")
