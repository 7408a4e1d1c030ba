"""pcsr-eval names the key of a value of the wrong type, before anything runs or is written."""

from __future__ import annotations

import sys

import pytest

from bad_input_kit import save_tiny_ckpt


@pytest.mark.parametrize("override, message", [
    ("eval.k=abc", "eval.k must be a number or a list of numbers, got 'abc'"),
    ("eval.k=[0,abc]", "eval.k must be a number or a list of numbers, got [0, 'abc']"),
    ("eval.skip_flat=x", "eval.skip_flat must be a number or a list of numbers"),
    ("eval.scale=abc", "eval.scale must be a number, got 'abc'"),
    ("eval.max_pixels=abc", "eval.max_pixels must be an integer, got 'abc'"),
    ("eval.adaptive=3", "eval.adaptive must be true or false, got 3"),
    ("eval.metrics=[1]", "eval.metrics must be a list of strings, got [1]"),
    ("+eval.bogus=1", "eval.bogus is not a setting of pcsr-eval"),
])
def test_a_bad_eval_value_names_its_key(tmp_path, capsys, monkeypatch, override, message):
    from pcsr_lightning.apps.eval_app import main as app

    (tmp_path / "photos").mkdir()
    run = tmp_path / "job"
    monkeypatch.setattr(sys, "argv", ["pcsr-eval", f"eval.ckpt={save_tiny_ckpt(tmp_path)}",
                                      f"eval.hr_dir={tmp_path / 'photos'}", override, f"hydra.run.dir={run}"])
    with pytest.raises(SystemExit) as exit_:
        app()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"error: {message}" in err and "Traceback" not in err, err
    assert not run.exists()
