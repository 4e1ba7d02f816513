"""`python -m retention`: the `retention` command."""

from retention.interfaces import cli

cli.main()
