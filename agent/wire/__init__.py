"""Everything that crosses a process boundary: probe results, one measurement model per
probe kind, job specs and statuses, readiness reports, and the packet value objects.
The collector imports nothing else of the agent."""
