"""The collector's HTTP API (FastAPI): agent, partner, ticket and metrics routes."""
