"""Contract tests: each probe kind's real measurement through the collector's ingest, rules,
tickets, /metrics and a dashboard panel evaluated by a real Prometheus; and the check that
every dashboard query and Prometheus rule names only series the models declare."""
