"""qos-scout collector: tenants, ingest, rules, tickets, notifications and metrics.

Public surface: `create_app` builds the FastAPI application over a `Store`;
`CollectorConfig` / `load_config` read the YAML config file.
"""

from collector.config import CollectorConfig, load_config

__all__ = ["CollectorConfig", "create_app", "load_config"]


def __getattr__(name: str) -> object:
    # FastAPI is heavy: import the app factory only when it is asked for.
    if name == "create_app":
        from collector.api.app import create_app

        return create_app
    raise AttributeError(name)
