"""Images with no hash signal of their own match as the same pixels: an index of them by size, and the comments
of images.quality and three columns of pairs.

Revision ID: 0028
Revises: 0027

dbdedup.match_same_size (sql/signals.sql) pairs flat, one-colour or almost detail-free images (quality below
verify_settings().min_quality, 10) of one size, for the check of their pixels: the issue's bad-input rule, that
such an image matches only as an exact copy, by its SHA-256 or by the same pixels (pairs.transform same_size,
verify_reason pixels). The partial index holds only those images, so each match reads them without a scan of
dbdedup.images. The comments are edited in place (the words added, as sql/tables.sql has them).
"""

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


# (table, column, text before, text after) of the comments edited
COMMENTS = (
    ("images", "quality", "matches only as an exact copy. NULL",
     "matches only as an exact copy or as the same pixels at one size (dbdedup.match_same_size). NULL"),
    ("pairs", "verify_reason", "a watermark); or, for a rejection",
     "a watermark), pixels (images with no hash signal of their own, the same pixels at one size up to re-encoding: "
     "dbdedup.match_same_size); or, for a rejection"),
    ("pairs", "transform", "embedding neighbours). NULL when",
     "embedding neighbours); same_size when dbdedup.match_same_size paired two images with no hash signal of their "
     "own by their size (transform_distance 0). NULL when"),
    ("pairs", "transform_distance", "0 for keypoints and linked.", "0 for keypoints, linked and same_size."),
)


def edit_comments(comments, forward: bool) -> None:
    """Replace each (table, column, before, after) text in that column's comment (after by before when not
    ``forward``); an error when the comment lacks the text this revision expects. Later revisions use it too."""
    for table, column, before, after in comments:
        old, new = (before, after) if forward else (after, before)
        op.execute(f"""
            DO $$
            DECLARE
                text_now text := col_description('dbdedup.{table}'::regclass,
                    (SELECT attnum FROM pg_attribute WHERE attrelid = 'dbdedup.{table}'::regclass AND attname = '{column}'));
            BEGIN
                IF strpos(text_now, $t${old}$t$) = 0 THEN
                    RAISE EXCEPTION 'the comment of {table}.{column} does not say what this revision expects';
                END IF;
                EXECUTE format('COMMENT ON COLUMN dbdedup.{table}.{column} IS %L', replace(text_now, $t${old}$t$, $t${new}$t$));
            END
            $$""")


def upgrade() -> None:
    op.execute("CREATE INDEX images_low_signal_idx ON dbdedup.images (least(width, height), greatest(width, height)) "
               "WHERE status = 'ok' AND quality < 10")
    edit_comments(COMMENTS, True)


def downgrade() -> None:
    edit_comments(COMMENTS, False)
    op.execute("DROP INDEX dbdedup.images_low_signal_idx")
