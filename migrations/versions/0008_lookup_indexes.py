"""One-image lookups from indexes: the pHash block indexes and dbdedup.lookup_flips.

Revision ID: 0008
Revises: 0007

dbdedup.similar, similar_to_hash and lookup (sql/api.sql) probe 4 btree indexes on the
interleaved 16-bit blocks of the pHash (and 4 on the border-trimmed pHash) instead of scanning
every image. Building them on an existing database reads every image once (about 10 s a
million on 2 cores).
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MASKS = (-8608480569735442159, 1229782938533634594, 2459565877067269188, 4919131754134538376)
"""dbdedup.interleaved_mask(4, b) for b = 0..3, as in sql/tables.sql."""


def upgrade() -> None:
    for b, mask in enumerate(MASKS):
        op.execute(f"CREATE INDEX images_phash_block{b}_idx ON dbdedup.images ((phash & {mask}), phash) WHERE status = 'ok'")
        op.execute(f"CREATE INDEX images_trimmed_block{b}_idx ON dbdedup.images ((phash_variants[8] & {mask}), "
                   f"(phash_variants[8])) WHERE status = 'ok' AND phash_variants[8] IS NOT NULL")
    op.execute("CREATE TABLE dbdedup.lookup_flips (block smallint NOT NULL, radius smallint NOT NULL, "
               "flips bigint[] NOT NULL, PRIMARY KEY (block, radius))")
    op.execute("COMMENT ON TABLE dbdedup.lookup_flips IS 'Constants of the one-image lookups: the XOR masks of block "
               "0-3''s Hamming ball of radius 0-3 (dbdedup.ball_masks(dbdedup.interleaved_mask(4, block), radius)), "
               "filled when the definitions are applied.'")


def downgrade() -> None:
    op.execute("DROP TABLE dbdedup.lookup_flips")
    for b in range(len(MASKS)):
        op.execute(f"DROP INDEX dbdedup.images_phash_block{b}_idx")
        op.execute(f"DROP INDEX dbdedup.images_trimmed_block{b}_idx")
