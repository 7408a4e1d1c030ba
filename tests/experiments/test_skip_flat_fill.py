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
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.measure.metrics import psnr

fill = load_script("skip_flat_fill")


def test_the_filter_is_the_packages_fit_and_bicubic_where_nothing_is_flat():
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 12, 10) * 0.02 + 0.4  # flat everywhere
    hr = fill.bicubic(lr) + 0.01
    stats = fill.statistics(lr, hr)
    assert stats.pixels == 3 * 12 * 10
    torch.testing.assert_close(fill.fitted_fill(stats, lr), stats.solve()(lr).detach())
    torch.testing.assert_close(fill.fitted_fill(stats, lr), hr, atol=1e-4, rtol=0)  # the bias learns the offset
    checker = ((torch.arange(12)[:, None] + torch.arange(10)[None]) % 2).float().expand(1, 3, 12, 10)
    busy = fill.statistics(checker, fill.bicubic(checker))
    assert busy.pixels == 0 and torch.equal(fill.fitted_fill(busy, checker), fill.bicubic(checker))


def test_the_bicubic_column_is_the_gates_own_loss(tmp_path):
    rng = np.random.default_rng(1)
    hr = torch.full((1, 3, 64, 256), 0.45)  # LR 16x64: four tiles of 16, the first two flat
    hr[..., 128:] = torch.from_numpy(rng.random((3, 64, 128))).float()
    lr = fill.lr_of(hr)
    model = pcsr_lightning.load(save_tiny(tmp_path / "tiny.ckpt"), device="cpu")
    rows = fill.gate_losses(model, lr, hr, fill.THRESHOLDS, {"bicubic": fill.bicubic(lr)})
    with torch.inference_mode():
        base = psnr(model.super_resolve(lr, 4.0, RoutingSpec.build(k=0.0))[0].clamp(0, 1), hr, 4)
        for row in rows:
            gated, _ = model.super_resolve(lr, 4.0, RoutingSpec.build(k=0.0, skip_flat=row["threshold"]))
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
