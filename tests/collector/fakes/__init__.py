"""Contract fakes of the services partners' channels reach (ConnectWise PSA, Autotask,
HaloPSA, Microsoft Teams, Slack, PagerDuty): real HTTP servers on loopback that enforce
the documented API and answer 4xx loudly on anything else."""
