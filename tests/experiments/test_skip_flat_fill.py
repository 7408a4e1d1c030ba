"""The fill experiment: the filter's layout, the leave-one-out fit, and the bicubic column being the gate's own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import pcsr_lightning
from experiment_scripts import load_script
from factories import save_tiny
from pcsr_lightning.inference.srmodel import RoutingOptions
from pcsr_lightning.measure.metrics import psnr

fill = load_script("skip_flat_fill")


def test_a_filter_taking_the_centre_tap_adds_the_nearest_lr_pixel_at_every_phase():
    lr = torch.rand(1, 3, 6, 7)
    weights = torch.zeros(26, 16, dtype=torch.float64)
    weights[12] = 1.0  # the centre of the 5x5 neighbourhood, every phase
    out = fill.linear_fill(lr, weights)
    nearest = lr.repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(out, fill.bicubic(lr) + nearest)
    assert torch.equal(fill.linear_fill(lr, torch.zeros(26, 16, dtype=torch.float64)), fill.bicubic(lr))


def test_phases_and_neighbourhoods_line_up_so_least_squares_recovers_a_filter():
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 12, 10)
    truth = torch.randn(26, 16, dtype=torch.float64)
    hr = fill.linear_fill(lr, truth)  # HR - bicubic(LR) is exactly the filter's output
    x = fill.neighbourhoods(lr)
    y = fill.phases(hr - fill.bicubic(lr), 12, 10)
    torch.testing.assert_close(fill.solve(x.T @ x, x.T @ y), truth, atol=1e-4, rtol=1e-4)


def test_the_bicubic_column_is_the_gates_own_loss(tmp_path):
    rng = np.random.default_rng(1)
    hr = torch.full((1, 3, 64, 256), 0.45)  # LR 16x64: four tiles of 16, the first two flat
    hr[..., 128:] = torch.from_numpy(rng.random((3, 64, 128))).float()
    lr = fill.lr_of(hr)
    model = pcsr_lightning.load(save_tiny(tmp_path / "tiny.ckpt"), device="cpu")
    rows = fill.gate_losses(model, lr, hr, fill.THRESHOLDS, {"bicubic": fill.bicubic(lr)})
    with torch.inference_mode():
        base = psnr(model.super_resolve(lr, 4.0, RoutingOptions(k=0.0))[0].clamp(0, 1), hr, 4)
        for row in rows:
            gated, _ = model.super_resolve(lr, 4.0, RoutingOptions(k=0.0, skip_flat=row["threshold"]))
            assert row["bicubic"] == pytest.approx(base - psnr(gated.clamp(0, 1), hr, 4), abs=1e-6)
            assert row["gate"] == pytest.approx(row["bicubic"], abs=1e-6)
    assert rows[-1]["skipped"] > 0  # the flat half is skipped at the largest threshold


def test_a_run_reports_each_photo_left_out_of_its_own_filter(tmp_path, capsys):
    rng = np.random.default_rng(2)
    paths = []
    for i in range(2):
        photo = np.full((64, 96, 3), 100 + 40 * i, np.uint8)
        photo[:, 48:] = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(photo).save(paths[-1])
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    out = tmp_path / "fill.json"
    fill.main(["--ckpt", str(ckpt), "--hr-size", "64x96", "--threads", "1", "--json", str(out), *map(str, paths)])
    report = json.loads(out.read_text())
    assert [p["name"] for p in report["photos"]] == ["p0", "p1"]
    assert [e["threshold"] for e in report["summary"]] == list(fill.THRESHOLDS)
    assert set(report["summary"][0]) >= set(fill.FILLS)
    assert "| 0.3 |" in capsys.readouterr().out


def test_eval_photos_may_not_be_fitted_on(tmp_path):
    with pytest.raises(SystemExit):
        fill.main(["--ckpt", "x.ckpt", "a.png", "--eval", "a.png"])
    with pytest.raises(SystemExit):
        fill.main(["--ckpt", "x.ckpt", "--hr-size", "60x96", "a.png"])
