"""dbdedup.cluster_settings: the clustering settings the user chose, kept until changed.

Revision ID: 0006
Revises: 0005

A database that has a clustering keeps it: its parameters (and its reference paths) become the
stored settings, so no reference path loses its protection on upgrade.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE dbdedup.cluster_settings (
            singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            threshold          smallint NOT NULL CHECK (threshold BETWEEN 0 AND 64),
            hash_kind          text NOT NULL CHECK (hash_kind IN ('phash', 'dhash', 'ahash')),
            rule               text NOT NULL CHECK (rule IN ('hash', 'transforms', 'embedding', 'fused')),
            keeper_rule        text NOT NULL CHECK (keeper_rule IN ('largest', 'newest', 'oldest')),
            reference_paths    text[] NOT NULL DEFAULT '{}',
            min_similarity     real NOT NULL CHECK (min_similarity > 0 AND min_similarity <= 1),
            confirm_distance   smallint NOT NULL CHECK (confirm_distance BETWEEN 0 AND 64),
            transform_distance smallint NOT NULL CHECK (transform_distance BETWEEN 0 AND 32),
            updated_at         timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("""
        COMMENT ON TABLE dbdedup.cluster_settings IS
            'How the user asked images to be clustered (one row, written when a command is given clustering options): '
            'match, report, export and apply use it until changed. The clustering built from it is in cluster_parameters.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.cluster_settings.threshold IS
            'Largest Hamming distance (bits of 64) between two near-duplicates.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.cluster_settings.rule IS
            'What links two images (see cluster_parameters.rule). Without embedding vectors, fused is applied as transforms.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.cluster_settings.reference_paths IS
            'Folders (or files) whose images are preferred as keepers and never moved or deleted. Paths are only added by '
            '`--reference`; `--clear-references` removes them.'""")
    # the clustering a database has is what its user chose last (defaults where it has none)
    op.execute("""
        INSERT INTO dbdedup.cluster_settings (threshold, hash_kind, rule, keeper_rule, reference_paths, min_similarity,
                                              confirm_distance, transform_distance)
        SELECT least(max_distance, 64), hash_kind, rule, keeper_rule, reference_paths,
               coalesce(min_similarity, 0.92), coalesce(confirm_distance, 20), least(coalesce(transform_distance, 2), 32)
        FROM dbdedup.cluster_parameters""")


def downgrade() -> None:
    op.execute("DROP TABLE dbdedup.cluster_settings")
