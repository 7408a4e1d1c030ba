"""The ``pcsr`` console script."""

from __future__ import annotations

import argparse
import importlib
import sys

from pcsr_lightning import __version__
from pcsr_lightning.io.checkpoint import CheckpointError

# Each module registers one subcommand (``add_parser``) and implements it (``run``).
COMMANDS = [
    "pcsr_lightning.apps.commands.import_official",
    "pcsr_lightning.apps.commands.upscale",
    "pcsr_lightning.apps.commands.eval",
    "pcsr_lightning.apps.commands.compare",
    "pcsr_lightning.apps.commands.flops",
    "pcsr_lightning.apps.commands.table",
    "pcsr_lightning.apps.commands.demo",
    "pcsr_lightning.apps.commands.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcsr", description="PCSR super-resolution: import, upscale, evaluate, train a demo")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        from pcsr_lightning.apps.commands.common import is_out_of_memory, out_of_memory

        if not is_out_of_memory(err):
            raise
        print(f"error: {out_of_memory(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
