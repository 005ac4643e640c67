"""`python -m agent`: the same as the `qos-scout` command."""

import sys

from agent.cli.main import main

sys.exit(main())
