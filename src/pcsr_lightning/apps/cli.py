"""The ``pcsr`` console script."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pcsr_lightning import __version__
from pcsr_lightning.apps.commands.common import is_out_of_memory, out_of_memory
from pcsr_lightning.io.checkpoint import ALLOW_ENV, CheckpointError

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
    "pcsr_lightning.apps.commands.swap",
    "pcsr_lightning.apps.commands.convert",
    "pcsr_lightning.apps.commands.fit_fill",
    "pcsr_lightning.apps.commands.export",
    "pcsr_lightning.apps.commands.bench_runtime",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcsr",
                                     description="PCSR super-resolution: import, upscale, evaluate, train a demo")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--allow-class", action="append", default=[], metavar="MODULE.CLASS",
                        help=f"also build this model class of your own from checkpoints (repeat; adds to ${ALLOW_ENV})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.allow_class:
        return _run(args)
    # The checkpoint loader reads one allow-list, the environment's: the option adds to it for this call only.
    before = os.environ.get(ALLOW_ENV)
    os.environ[ALLOW_ENV] = ",".join(filter(None, [before, *args.allow_class]))
    try:
        return _run(args)
    finally:
        if before is None:
            del os.environ[ALLOW_ENV]
        else:
            os.environ[ALLOW_ENV] = before


def _run(args: argparse.Namespace) -> int:
    """Exit codes: 2 with one ``error:`` line for a refusal or a failure of the whole command, 130 when
    interrupted (Ctrl-C), 141 quietly when the reader of its output went away (a closed pipe); a command
    returns 1 itself when it skipped some images."""
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a reader gone away is noticed here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return closed_pipe()
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file the command could not read or write, named by the OS error
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: pcsr {args.command} stopped before it finished", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        print(f"error: {out_of_memory(err)}", file=sys.stderr)
        return 2


CLOSED_PIPE = 141  # 128 + SIGPIPE: what the shell reports for a Unix tool whose reader went away


def closed_pipe() -> int:
    """The reader of stdout or stderr went away (``pcsr upscale ... | head -1``): stop quietly, as Unix tools
    do. Results already written stay whole (every write is atomic); nothing more goes to the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass  # a stream without a file descriptor (captured): nothing to redirect
    os.close(devnull)
    return CLOSED_PIPE


if __name__ == "__main__":
    sys.exit(main())
