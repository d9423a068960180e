"""Alembic environment: runs on a connection handed over by dbdedup.db."""

from alembic import context
from sqlalchemy import text

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - dbdedup always hands one over
    raise RuntimeError("dbdedup migrations run through `dbdedup migrate`, not the alembic command")

# The version table lives in our schema, so the schema must exist first.
connection.execute(text("CREATE SCHEMA IF NOT EXISTS dbdedup"))
context.configure(
    connection=connection,
    version_table_schema="dbdedup",
    target_metadata=None,
)
with context.begin_transaction():
    context.run_migrations()
