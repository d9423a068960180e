"""The SQL of dbdedup: installed as the package ``dbdedup.sql`` (see pyproject's package-dir).

``tables.sql`` defines every table; ``bits.sql``, ``signals.sql``, ``matching.sql``,
``clusters.sql`` and ``api.sql`` every function and view; ``queries/`` the named queries the
Python side runs. ``dbdedup/schema.py`` applies them.
"""
