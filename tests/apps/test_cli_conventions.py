"""What users of other command-line tools expect of ``pcsr``: a help text on every option of every
subcommand, ``--version``, the exit codes in ``--help``, and ``--dtype`` with a warning where it is slow."""

from __future__ import annotations

import argparse
import re

import pytest
from PIL import Image

import pcsr_lightning
from factories import save_tiny
from pcsr_lightning.apps.cli import COMMANDS, EXIT_CODES, build_parser, main
from pcsr_lightning.apps.commands.common import DTYPE_NAMES
from pcsr_lightning.bench.run import DTYPES as BENCH_DTYPES
from pcsr_lightning.inference.srmodel import DTYPES as MODEL_DTYPES


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_of_every_subcommand_has_a_help_text():
    parser = build_parser()
    missing = [f"pcsr {name} {'/'.join(a.option_strings) or a.dest}"
               for name, sub in [("", parser), *subparsers(parser).items()] for a in sub._actions
               if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()]
    assert missing == []


def test_the_command_table_gives_each_subcommand_its_own_help_line():
    """``pcsr --help`` lists the table's lines without importing the commands: they are the modules' own."""
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {c.dest: c.help for c in action._choices_actions} == {n: c.help for n, c in COMMANDS.items()}


def test_version_and_exit_codes_in_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"pcsr {pcsr_lightning.__version__}"
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    text = capsys.readouterr().out
    assert stop.value.code == 0 and EXIT_CODES in text
    assert set(re.findall(r"^  (\d+) ", EXIT_CODES, re.M)) == {"0", "1", "2", "130", "141"}
    assert "demo             pip install 'pcsr-lightning[train,flops,demo]'" in text


def test_a_usage_error_is_exit_code_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["upscale", "--ckpt", "x"])
    assert stop.value.code == 2 and "required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["no-such-command"])
    assert stop.value.code == 2


def test_the_dtype_names_are_the_same_everywhere():
    assert set(DTYPE_NAMES) == set(BENCH_DTYPES)
    assert set(DTYPE_NAMES.values()) == set(MODEL_DTYPES)
    bench = subparsers(build_parser())["bench"]
    (dtype,) = [a for a in bench._actions if "--dtype" in a.option_strings]
    assert dtype.option_strings == ["--dtype", "--precision"] and dtype.dest == "precision"


def test_upscale_runs_in_the_dtype_asked_for_and_warns_of_fp16_on_cpu(tmp_path, capsys):
    model = save_tiny(tmp_path / "tiny.safetensors")
    Image.new("RGB", (9, 7), (120, 60, 30)).save(tmp_path / "photo.png")
    outs = {}
    for dtype in ("fp32", "bf16", "fp16"):
        out = tmp_path / dtype
        assert main(["upscale", "--ckpt", str(model), "--input", str(tmp_path / "photo.png"), "--output", str(out),
                     "--dtype", dtype]) == 0
        err = capsys.readouterr().err
        warned = [line for line in err.splitlines() if line.startswith("warning: fp16")]
        assert len(warned) == (dtype == "fp16"), err
        outs[dtype] = Image.open(out / "photo.png").convert("RGB")
    assert all(o.size == (36, 28) for o in outs.values())
    # The low-precision runs differ from fp32 a little (they ran in that dtype), not by everything.
    base = outs["fp32"].tobytes()
    for dtype in ("bf16", "fp16"):
        diff = sum(abs(a - b) for a, b in zip(base, outs[dtype].tobytes())) / len(base)
        assert 0 < diff < 8, (dtype, diff)
    with pytest.raises(SystemExit):
        main(["upscale", "--ckpt", str(model), "--input", "x", "--output", "y", "--dtype", "float64"])
    assert "invalid choice: 'float64'" in capsys.readouterr().err
