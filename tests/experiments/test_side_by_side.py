"""The side-by-side harness of the release's stage-1 training and ours: what it needs, what it sets."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "release" / "side_by_side.py"
spec = importlib.util.spec_from_file_location("experiments_release_side_by_side", SCRIPT)
side_by_side = importlib.util.module_from_spec(spec)
spec.loader.exec_module(side_by_side)
RELEASE = os.environ.get("PCSR_RELEASE_CODE")


def test_without_the_release_code_it_stops_naming_what_is_missing(tmp_path):
    with pytest.raises(SystemExit, match="pass --release-code or set PCSR_RELEASE_CODE"):
        side_by_side.release_code(None)
    (tmp_path / "train_pcsr.py").write_text("")
    with pytest.raises(SystemExit, match=r"missing configs/fsrcnn-pcsr-phase1.yaml, models/pcsr.py"):
        side_by_side.release_code(str(tmp_path))
    with pytest.raises(SystemExit, match=r"--released x.pth not found"):
        side_by_side.check_inputs(SimpleNamespace(train=tmp_path, val=tmp_path, report=tmp_path, released="x.pth"))
    with pytest.raises(SystemExit, match=r"--val .*empty is not a folder of photos"):
        side_by_side.check_inputs(SimpleNamespace(train=tmp_path, val=tmp_path / "empty", report=tmp_path,
                                                  released="x.pth"))


def test_the_report_puts_the_gap_beside_each_framework_s_seed_spread():
    curves = {"release": {1: {"k=0": (10.0, 30.0), "k=1": (2.0, 28.0)}, 2: {"k=0": (10.0, 30.2), "k=1": (2.0, 28.0)}},
              "ours": {1: {"k=0": (6.0, 30.1), "k=1": (2.0, 28.1)}, 2: {"k=0": (6.0, 30.5), "k=1": (2.0, 28.1)}}}
    text = side_by_side.report(curves, {"release": [60.0, 62.0], "ours": [50.0, 50.0]})
    # same k: 30.3 - 30.1; same GFLOPs: the release's curve at 6 GFLOPs is 28 + (30.1 - 28) / 2
    assert "| k=0 | 10.000 / 6.000 | 30.100 (0.200) | 30.300 (0.400) | +0.200 | +1.250 |" in text
    assert "| k=1 | 2.000 / 2.000 | 28.000 (0.000) | 28.100 (0.000) | +0.100 | +0.100 |" in text
    assert "release: 2 runs (seeds), 61 s of training each" in text


@pytest.mark.skipif(not RELEASE, reason="the release's code is not on disk: set PCSR_RELEASE_CODE to a checkout "
                                        "of github.com/3587jjh/PCSR")
def test_the_release_config_gets_the_run_s_photos_steps_batch_queries_and_seed(tmp_path):
    root = side_by_side.release_code(RELEASE)
    args = SimpleNamespace(train=str(tmp_path), val=str(tmp_path), repeat=20, lr_patch=32, queries=1024, batch=16,
                           steps=300)
    config = side_by_side.release_config(root, args, seed=2)
    train = config["train_dataset"]
    assert train["batch_size"] == 16 and train["wrapper"]["args"]["sample_q"] == 1024
    assert train["wrapper"]["args"]["inp_size"] == 32 and train["dataset"]["args"]["root_path"] == str(tmp_path)
    assert config["seed"] == 2 and config["iter_max"] == 300 and config["iter_val"] > 300
    assert config["lr_scheduler"]["args"]["T_period"] == [300] and config["phase"] == 1
