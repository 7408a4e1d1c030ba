"""The ``pcsr`` console script."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass

from pcsr_lightning import __version__
from pcsr_lightning.apps.commands.common import is_out_of_memory, out_of_memory
from pcsr_lightning.extras import PACKAGES, MissingExtra, install_command, missing_extra
from pcsr_lightning.io.checkpoint import ALLOW_ENV, CheckpointError


@dataclass(frozen=True)
class Command:
    """One subcommand: the module that registers (``add_parser``) and implements (``run``) it, imported only
    when the subcommand runs, the extras it needs beyond the inference install, and its one-line help for
    ``pcsr --help`` (the module's own, which a test keeps equal)."""

    module: str
    help: str
    extras: tuple[str, ...] = ()


_PREFIX = "pcsr_lightning.apps.commands."
COMMANDS = {
    "import-official": Command(_PREFIX + "import_official",
                               "convert a PCSR release checkpoint (FSRCNN, CARN, SRResNet; original or PCSR)"),
    "upscale": Command(_PREFIX + "upscale", "super-resolve an image or every image of a folder"),
    "eval": Command(_PREFIX + "eval", "PSNR and GFLOPs over a folder of HR images (LR by MATLAB-style bicubic)",
                    ("flops",)),
    "compare": Command(_PREFIX + "compare",
                       "PSNR/GFLOPs curves of several eval summaries, gap to the first at equal GFLOPs"),
    "flops": Command(_PREFIX + "flops", "per-module FLOPs (paper and fvcore conventions); total on the last line",
                     ("flops",)),
    "table": Command(_PREFIX + "table", "the paper's Table 1 from checkpoints or training runs", ("flops",)),
    "demo": Command(_PREFIX + "demo", "train the quick profile of a PCSR model on the embedded photos and compare",
                    ("train", "flops", "demo")),
    "bench": Command(_PREFIX + "bench", "time routed PCSR against the original network and the reference path"),
    "swap": Command(_PREFIX + "swap", "a checkpoint with the named parts (e.g. classifier) taken from another one"),
    "convert": Command(_PREFIX + "convert", "convert a model between .ckpt, .safetensors and a model folder"),
    "fit-fill": Command(_PREFIX + "fit_fill", "fit the flat-tile gate's linear fill (--skip-fill linear) on HR photos"),
    "export": Command(_PREFIX + "export",
                      "export a model to ONNX or a torch.export program (PCSR: routing in the graph)"),
    "bench-runtime": Command(_PREFIX + "bench_runtime",
                             "time the ONNX export in ONNX Runtime beside the PyTorch path", ("export",)),
}

EXIT_CODES = """exit codes:
  0    done
  1    some inputs could not be processed (each named on stderr); the others were written
  2    a usage error, a refused or failed command (one 'error:' line), or a missing extra
  130  interrupted (Ctrl-C); the files already written are kept
  141  the reader of the output went away (a closed pipe, e.g. | head); the files already written are kept
  (a traceback, exit code 1, is a bug: please report it)"""


def _epilog() -> str:
    needs = [f"  {name:16} {install_command(*c.extras)}" for name, c in COMMANDS.items() if c.extras]
    return (f"{EXIT_CODES}\n\nThe plain install (pip install pcsr-lightning) runs every other command; these "
            "need extras:\n" + "\n".join(needs) + "\nand some options: --wandb (eval, table) the wandb extra, "
            "pcsr flops --arch the train extra,\npcsr table without --dataset the demo extra (its sample photos).")


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names: its first argument that is neither an option of ``pcsr`` itself nor
    the value of one; None when that names no command (argparse then says what is wrong)."""
    words = iter(argv)
    for word in words:
        if word == "--allow-class":
            next(words, None)
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(built: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the options of the subcommands in ``built`` (None: all of them) and a one-line entry
    for each other: a command's module (and what it imports) loads only when the command runs."""
    parser = argparse.ArgumentParser(prog="pcsr", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="PCSR super-resolution: import, upscale, evaluate, train a demo",
                                     epilog=_epilog())
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    parser.add_argument("--allow-class", action="append", default=[], metavar="MODULE.CLASS",
                        help=f"also build this model class of your own from checkpoints (repeat; adds to ${ALLOW_ENV})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        if built is None or name in built:
            importlib.import_module(command.module).add_parser(sub)
        else:
            sub.add_parser(name, help=command.help)
    return parser


def missing_packages(command: Command) -> list[str]:
    """The packages of the command's extras this install lacks (looked up, not imported)."""
    return [package for package, (_, extra) in PACKAGES.items()
            if extra in command.extras and importlib.util.find_spec(package) is None]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    name = chosen_command(argv)
    if name is not None:
        command = COMMANDS[name]
        missing = missing_packages(command)
        if missing:
            print(f"error: pcsr {name} needs {', '.join(PACKAGES[p][0] for p in missing)}, not installed: "
                  f"{install_command(*command.extras)}", file=sys.stderr)
            return 2
    try:
        parser = build_parser([name] if name else [])
    except ModuleNotFoundError as err:
        if missing_extra(err) is None:
            raise
        print(f"error: pcsr {name}: {_needs(err)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
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
    """Exit codes (``EXIT_CODES``): 2 with one ``error:`` line for a refusal or a failure of the whole command
    (a missing extra included), 130 when interrupted (Ctrl-C), 141 quietly when the reader of its output
    went away (a closed pipe); a command returns 1 itself when it skipped some images."""
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a reader gone away is noticed here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return closed_pipe()
    except ModuleNotFoundError as err:  # an optional package an option of the command needs
        if missing_extra(err) is None:
            raise
        print(f"error: pcsr {args.command}: {_needs(err)}", file=sys.stderr)
        return 2
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


def _needs(err: ModuleNotFoundError) -> str:
    """One line: what is missing and the install that brings it."""
    if isinstance(err, MissingExtra):
        return str(err)
    top = (err.name or "").split(".")[0]
    return f"needs {PACKAGES[top][0]}, which is not installed: {install_command(missing_extra(err))}"


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
