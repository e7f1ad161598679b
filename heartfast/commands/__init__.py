"""CLI subcommands: every module here defines `register(tree: heartfast.cli.CommandTree)`."""
