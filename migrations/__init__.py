"""Alembic migrations of the profiler server's schema (the only way the schema changes)."""
