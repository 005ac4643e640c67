"""Security test fixtures: the collector fixtures (SQLite and a real PostgreSQL, a real
uvicorn on loopback) shared with tests/collector."""

from tests.collector.conftest import db_url, make_store, pg_cluster, serve

__all__ = ["db_url", "make_store", "pg_cluster", "serve"]
