"""Command-line interface: ``xnorlab`` (the app) and its subcommands."""
