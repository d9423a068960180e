"""dbdedup: SQL-native image deduplication inside PostgreSQL."""

__version__ = "0.1.0"
