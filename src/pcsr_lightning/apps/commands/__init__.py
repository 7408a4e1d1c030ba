"""Subcommands of the ``pcsr`` console script; each module has ``add_parser`` and ``run``."""
