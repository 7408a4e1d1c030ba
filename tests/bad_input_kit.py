"""What both bad-input suites build on: a tiny PCSR checkpoint, the CLI's exit code and stderr, and a
folder's bytes and times, so a test can say that a refused command wrote nothing and changed nothing."""

from __future__ import annotations

import re
import sys
from functools import partial
from pathlib import Path

from factories import pcsr_config, pcsr_net
from pcsr_lightning.apps.cli import main
from pcsr_lightning.io.checkpoint import save_checkpoint

TINY_CONFIG = pcsr_config("carn", [[16], [8]], [8], rgb_mean=[0.0, 0.0, 0.0], nf=8)
# the network TINY_CONFIG describes, built from modules (no config is instantiated: these tests refuse configs)
tiny_model = partial(pcsr_net, upsampler_hidden=[[16], [8]], rgb_mean=(0.0, 0.0, 0.0))


def save_tiny_ckpt(folder: Path) -> Path:
    return save_checkpoint(folder / "tiny.ckpt", tiny_model(), TINY_CONFIG)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``pcsr ARGS``; argparse's usage errors count with their exit code."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def run_app(app, args: list, capsys, monkeypatch) -> tuple[int, str]:
    """Exit code and stderr of a Hydra app (``pcsr-train``, ``pcsr-eval``) run in this process. Without the
    reports of log handlers whose stream an earlier test's capture closed (an artefact of running Hydra
    apps in one pytest process, not of the apps)."""
    monkeypatch.setattr(sys, "argv", [app.__module__, *map(str, args)])
    try:
        app()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    return code, re.sub(r"--- Logging error ---\n.*?\nArguments: [^\n]*\n", "", err, flags=re.S)
