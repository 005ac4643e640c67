"""The `qos-scout` command: one module per command group (`cmd_*`), the demo and the stack
of processes it starts. `agent.cli.main:main` is the console script."""
