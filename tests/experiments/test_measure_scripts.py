"""The measurements behind the README's DIV2K and training-speed figures, on tiny settings."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from experiment_scripts import EXPERIMENTS, load_script
from factories import save_tiny, tiny_model

div2k_scale = load_script("div2k_scale")
train_speed = load_script("train_speed")


def test_train_speed_times_every_stage_built_from_the_config():
    batch = train_speed.one_batch(2, 64)
    assert batch["lr"].shape == (2, 3, 32, 32) and batch["idx"].shape == (2, 64)
    rows = train_speed.time_stages("fsrcnn_pcsr", 64, batch, "cpu", steps=2, warmup=1)
    assert [r["stage"] for r in rows] == ["stage0", "stage1"]
    assert all(len(r["times_ms"]) == 2 and r["ms_per_step"] > 0 and r["queries"] == 64 for r in rows)
    text = train_speed.table(rows + [{**rows[0], "experiment": "fsrcnn_original", "stage": "original"}])
    assert "| fsrcnn_pcsr | stage1 | 2 | 64 |" in text and "| fsrcnn_original | original | 2 | - |" in text
    routed = train_speed.time_stages("fsrcnn_pcsr", 64, batch, "cpu", steps=1, warmup=0,
                                     overrides=["model=pcsr_routed"])
    assert [r["stage"] for r in routed] == ["stage0", "stage1", "stage1_routed"]
    with pytest.raises(ValueError, match=r"data.scale=1..4 of fsrcnn_pcsr is not one integer scale"):
        train_speed.time_stages("fsrcnn_pcsr", 64, batch, "cpu", steps=1, warmup=0, overrides=["data.scale=[1,4]"])


def test_div2k_like_folder_has_the_published_layout(tmp_path):
    paths = div2k_scale.make_div2k_like(tmp_path, 1)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["DIV2K_train_HR/0001.png"]
    with Image.open(paths[0]) as img:
        arr = np.asarray(img)
    assert arr.shape == (1356, 2040, 3)
    assert (tmp_path / "DIV2K_valid_HR" / "0801.png").is_file()
    assert arr.std() > 20  # photo texture, not a flat image
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    with open(sparse / "f", "wb") as fh:
        fh.truncate(10 * 2**20)  # allocated blocks, not the apparent size
    (sparse / "g").write_bytes(b"x" * 8192)
    assert 8192 <= div2k_scale.disk_bytes(sparse) < 2**20


def test_png_level_measures_every_level_and_checks_the_pixels():
    png_level = load_script("png_level")
    rng = np.random.default_rng(0)
    arr = (np.linspace(0, 200, 64)[None, :, None] + rng.integers(0, 40, (32, 64, 3))).astype(np.uint8)
    ms, sizes = png_level.measure(arr, [0, 1, 9], rounds=2)
    assert set(ms) == set(sizes) == {0, 1, 9} and all(v > 0 for v in ms.values())
    assert sizes[0] > sizes[1] >= sizes[9]
    lines = png_level.table([("a", ms, sizes), ("b", ms, sizes)], [0, 1, 9])
    assert lines[0] == "| level | write ms | x level 0 time | MB | x level 0 size |"
    assert lines[2].startswith("| 0 | ") and lines[2].endswith(" | 1.000 |")


def test_upsampler_fit_reports_the_light_upsamplers_errors_and_its_dead_units(tmp_path):
    fit = load_script("upsampler_fit")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (136, 160, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    pairs = fit.pairs_of(sorted(tmp_path.glob("*.png")))
    net = tiny_model()
    l1, mse = fit.fit(net, pairs)
    assert 0 < l1 < 255 and l1 * l1 <= mse + 1e-6  # mean |e| squared never exceeds mean e^2
    hidden = [m.out_features for m in net.upsamplers[1].linears[:-1]]
    assert [len(s) for s in fit.active_shares(net, pairs, side=8)] == hidden
    with torch.no_grad():  # unit 0 of the first hidden layer never positive: dead
        first = net.upsamplers[1].linears[0]
        first.weight[0] = 0.0
        first.bias[0] = -1.0
    assert fit.active_shares(net, pairs, side=8)[0][0] == 0.0
    save_tiny(tmp_path / "m.ckpt")
    command = [sys.executable, str(EXPERIMENTS / "upsampler_fit.py"), str(tmp_path), str(tmp_path / "m.ckpt"),
               "--threads", "1"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "2 photos" in out and "| checkpoint | mean L1 | mean MSE | dead units per hidden layer |" in out


def test_routing_oracle_compares_the_classifiers_choice_with_the_best_one(tmp_path):
    oracle = load_script("routing_oracle")
    assert oracle.psnr_at(torch.tensor([4.0, 2.0]), torch.tensor([3.0, 1.0]), 0.5) == \
        oracle.psnr_of((6.0 - 3.0) / 2)  # one of two pixels sent: its gain of 3 comes off e_1's sum
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (136, 160, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    pairs = [oracle.load_pair(path, 4, None, "paper") for path in sorted(tmp_path.glob("*.png"))]
    net = tiny_model()
    shares = [0.0, 0.1, 0.5, 1.0]
    by_classifier, by_oracle, one_threshold = oracle.curves(net, pairs, shares)
    errors = [oracle.pixel_errors(net, hr, lr) for hr, lr in pairs]
    ends = [sum(oracle.psnr_of(float(e.mean())) for e in es) / 2 for es in ([e1 for _, _, e1 in errors],
                                                                          [e0 for _, e0, _ in errors])]
    for row in (by_classifier, by_oracle, one_threshold):  # nothing sent: U_1 alone; everything: U_0 alone
        assert row[0] == pytest.approx(ends[0]) and row[-1] == pytest.approx(ends[1])
    assert all(o >= c - 1e-9 for o, c in zip(by_oracle, by_classifier))  # no choice beats the oracle's
    everything = torch.cat([p0 for p0, _, _ in errors])  # one threshold, by masks instead of sorted sums
    threshold = torch.topk(everything, round(0.1 * everything.numel())).values[-1]
    by_masks = sum(oracle.psnr_of(float(torch.where(p0 >= threshold, e0, e1).mean())) for p0, e0, e1 in errors) / 2
    assert one_threshold[1] == pytest.approx(by_masks)
    save_tiny(tmp_path / "m.ckpt")
    command = [sys.executable, str(EXPERIMENTS / "routing_oracle.py"), str(tmp_path), f"tiny={tmp_path / 'm.ckpt'}",
               "--shares", "0", "0.1", "--threads", "1"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "2 photos" in out and "| tiny: oracle, each photo alike |" in out
    assert "| tiny: classifier, one threshold |" in out
