"""dbdedup.verdicts: reviewers' decisions, keyed by content, that clustering honours.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(r"""
        CREATE TABLE dbdedup.verdicts (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind       text NOT NULL CHECK (kind IN ('not_duplicate', 'not_in_cluster', 'keeper', 'duplicate')),
            sha256_a   bytea NOT NULL CHECK (length(sha256_a) = 32),
            sha256_b   bytea CHECK (length(sha256_b) = 32),
            decided_by text NOT NULL DEFAULT current_user,
            decided_at timestamptz NOT NULL DEFAULT now(),
            note       text,
            CONSTRAINT verdicts_subject_check CHECK (
                CASE WHEN kind IN ('not_duplicate', 'duplicate') THEN sha256_b IS NOT NULL AND sha256_a < sha256_b
                     ELSE sha256_b IS NULL END
            )
        )""")
    op.execute(r"CREATE UNIQUE INDEX verdicts_subject_idx ON dbdedup.verdicts (sha256_a, coalesce(sha256_b, '\x'::bytea))")
    op.execute("CREATE INDEX verdicts_sha256_b_idx ON dbdedup.verdicts (sha256_b) WHERE sha256_b IS NOT NULL")
    op.execute("""
        COMMENT ON TABLE dbdedup.verdicts IS
            'What reviewers decided, keyed by content (SHA-256), so a decision survives moves, renames, reloads and a fresh '
            'database loaded from the same files. One verdict per image or pair (a new one replaces the old). build_clusters '
            'honours them; dbdedup.verdicts_current shows each with the images it names now.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.verdicts.kind IS
            'not_duplicate (pair): the two never link; not_in_cluster (image): a duplicate of nothing its signals found, it '
            'links only by duplicate verdicts; keeper (image): ranks first as keeper of its cluster; duplicate (pair): the two '
            'link whatever their distance (a pair the signals missed).'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.verdicts.sha256_a IS
            'SHA-256 of the image (of a pair: the smaller of the two, byte order).'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.verdicts.sha256_b IS
            'SHA-256 of the second image of a pair (the larger); NULL for an image verdict.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.verdicts.decided_by IS
            'Who decided: the user name the command line gives, else the database role.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.verdicts.decided_at IS
            'When it was decided (kept from the file when verdicts are imported).'""")
    op.execute("COMMENT ON COLUMN dbdedup.verdicts.note IS 'Optional free text from the reviewer.'")


def downgrade() -> None:
    op.execute("DROP TABLE dbdedup.verdicts")
