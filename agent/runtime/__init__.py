"""The agent's runtime: config, scheduler, spool, shipper, collector client, jobs, local
metrics, and the loop that runs them (`agent.runtime.loop`)."""
