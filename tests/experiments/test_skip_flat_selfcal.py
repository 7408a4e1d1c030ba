"""The self-calibrated threshold experiment: its rules on hand-made curves, and one run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from experiment_scripts import load_script
from factories import save_tiny

selfcal = load_script("skip_flat_selfcal")


def test_largest_within_and_at_read_the_curve_as_the_rules_need():
    curve = [(0.02, 0.0, 0.1), (0.05, 0.03, 0.3), (0.1, 0.08, 0.5), (0.2, 0.04, 0.6)]
    assert selfcal.largest_within(curve, 0.05) == 0.2  # the largest grid value within the budget
    assert selfcal.largest_within(curve, 0.01) == 0.02
    assert selfcal.largest_within(curve, -1.0) == 0.0  # none: the gate off
    assert selfcal.at(curve, 0.075) == (0.03, 0.3)  # the largest grid threshold not above 0.075
    assert selfcal.at(curve, 0.01) == (0.0, 0.0)  # below the grid: nothing skipped


def test_hr_crop_centres_turns_only_when_it_must_and_refuses_small_photos(tmp_path):
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 40:] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    crop = selfcal.hr_crop(tmp_path / "wide.png", 32, 64)
    assert crop.shape == (1, 3, 32, 64) and crop[0, 0, 0, 31] == 0 and crop[0, 0, 0, 32] == 1  # centred
    assert selfcal.hr_crop(tmp_path / "wide.png", 64, 32).shape == (1, 3, 64, 32)  # turned a quarter turn
    assert selfcal.hr_crop(tmp_path / "wide.png", 96, 96) is None


def test_one_run_reports_every_rule_and_the_oracle_bounds_the_loss(tmp_path, capsys):
    rng = np.random.default_rng(0)
    photo = np.full((128, 192, 3), 120, np.uint8)  # flat half and textured half
    photo[:, 96:] = rng.integers(0, 256, (128, 96, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "half.png")
    ckpt = tmp_path / "tiny.ckpt"
    save_tiny(ckpt)
    out = tmp_path / "selfcal.json"
    selfcal.main(["--ckpt", str(ckpt), "--hr-size", "128x192", "--threads", "1", "--json", str(out),
                  str(tmp_path / "half.png")])
    report = json.loads(out.read_text())
    (row,) = report["photos"]
    assert [t for t, _, _ in row["full"]] == list(selfcal.GRID)
    assert row["oracle"] in selfcal.GRID or row["oracle"] == 0.0
    assert report["rules"]["oracle (needs the HR image)"]["worst"] <= 0.05
    shares = [share for _, _, share in row["full"]]
    assert shares == sorted(shares) and shares[-1] > 0  # a larger threshold never skips less
    assert set(report["rules"]) >= {"fixed 0.045", "self-calibrated x0.5"}
    assert "| half |" in capsys.readouterr().out


def test_sizes_must_survive_two_downscales():
    with pytest.raises(SystemExit):
        selfcal.main(["--ckpt", "x.ckpt", "--hr-size", "100x192", "p.png"])


def test_every_fixed_threshold_is_on_the_grid():
    assert set(selfcal.FIXED) <= set(selfcal.GRID)  # else a fixed rule would be read at a lower grid value
