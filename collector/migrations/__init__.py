"""Alembic migrations of the collector database (run by `qos-scout collector migrate`)."""
