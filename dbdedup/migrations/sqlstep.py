"""Migrations run SQL files shipped in dbdedup/sql/migrations/."""

from alembic import op

from dbdedup.sqlfiles import read_sql


def run_sql_file(name: str) -> None:
    """Execute one SQL file (may hold many statements) on the migration connection."""
    # Straight to the psycopg cursor: with no parameters psycopg sends the text
    # as is (several statements, literal % signs), with no placeholder parsing.
    with op.get_bind().connection.dbapi_connection.cursor() as cursor:
        cursor.execute(read_sql(name))
