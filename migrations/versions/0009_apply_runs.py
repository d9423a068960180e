"""dbdedup.apply_runs and dbdedup.apply_actions: what each apply run did, so undo reverses only that.

Revision ID: 0009
Revises: 0008

Manifests written before this revision name no recorded run, so undo refuses them.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE dbdedup.apply_runs (
            id         uuid PRIMARY KEY,
            action     text NOT NULL CHECK (action IN ('move', 'delete', 'hardlink')),
            move_to    bytea,
            manifest   text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )""")
    op.execute("""
        COMMENT ON TABLE dbdedup.apply_runs IS
            'One row per `dbdedup apply --yes`, committed before it touches a file. `dbdedup undo` reverses only the actions '
            'recorded here for the run its manifest names, and refuses a manifest that says anything else.'""")
    op.execute("COMMENT ON COLUMN dbdedup.apply_runs.id IS 'The run, named by run_id in the first line of its manifest.'")
    op.execute("COMMENT ON COLUMN dbdedup.apply_runs.action IS 'move, delete or hardlink.'")
    op.execute("""
        COMMENT ON COLUMN dbdedup.apply_runs.move_to IS
            'The --move-to folder (the exact bytes of its path); NULL for delete and hardlink.'""")
    op.execute("COMMENT ON COLUMN dbdedup.apply_runs.manifest IS 'Where the run''s manifest was written.'")
    op.execute("""
        CREATE TABLE dbdedup.apply_actions (
            run_id            uuid NOT NULL REFERENCES dbdedup.apply_runs (id) ON DELETE CASCADE,
            seq               integer NOT NULL,
            image_id          bigint NOT NULL,
            path_bytes        bytea NOT NULL,
            destination_bytes bytea,
            partial_bytes     bytea,
            size_bytes        bigint NOT NULL,
            mtime_ns          bigint NOT NULL,
            sha256            bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""")
    op.execute("""
        COMMENT ON TABLE dbdedup.apply_actions IS
            'Every file an apply run planned to act on, as the intent line with the same seq in its manifest must give it.'""")
    op.execute("COMMENT ON COLUMN dbdedup.apply_actions.seq IS 'The action''s number in the run (seq in the manifest).'")
    op.execute("""
        COMMENT ON COLUMN dbdedup.apply_actions.image_id IS
            'The image (dbdedup.images.id) when the run was planned.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.apply_actions.path_bytes IS
            'The file acted on (the exact bytes of its path).'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.apply_actions.destination_bytes IS
            'Where a move puts it (under the run''s move_to); NULL for delete and hardlink.'""")
    op.execute("""
        COMMENT ON COLUMN dbdedup.apply_actions.partial_bytes IS
            'The temporary name of a copy across file systems or of a new hard link; undo removes one left behind.'""")
    op.execute("COMMENT ON COLUMN dbdedup.apply_actions.size_bytes IS 'The file''s size when planned.'")
    op.execute("COMMENT ON COLUMN dbdedup.apply_actions.mtime_ns IS 'The file''s modification time (ns) when planned.'")
    op.execute("""
        COMMENT ON COLUMN dbdedup.apply_actions.sha256 IS
            'The file''s content; undo puts back only a file with this content.'""")


def downgrade() -> None:
    op.execute("DROP TABLE dbdedup.apply_actions")
    op.execute("DROP TABLE dbdedup.apply_runs")
