"""`python -m copilot.cli`: the `copilot` command (as `copilot up` starts its services)."""

from copilot.cli.main import main

main()
