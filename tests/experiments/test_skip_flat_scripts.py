"""The flat-tile gate's photo sets and threshold choice, on tiny made-up photos and tables."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiment_scripts import EXPERIMENTS


def run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXPERIMENTS / script), *map(str, args)], capture_output=True, text=True)


def test_photo_sets_take_folders_and_files_and_turn_portrait_photos_on_request(tmp_path):
    rng = np.random.default_rng(0)
    photos = {"wide": (40, 64), "tall": (64, 40), "small": (20, 20), "single": (48, 70)}
    (tmp_path / "folder").mkdir()
    arrays = {}
    for name, (h, w) in photos.items():
        arrays[name] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        where = tmp_path / ("single.png" if name == "single" else f"folder/{name}.png")
        Image.fromarray(arrays[name]).save(where)
    out = tmp_path / "out"
    done = run("skip_flat_photos.py", tmp_path / "folder", tmp_path / "single.png", out, "--hr-size", "32x60",
               "--split", "none", "--portrait")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "all").iterdir()) == ["single.png", "tall.png", "wide.png"]
    tall = np.asarray(Image.open(out / "all" / "tall.png"))
    turned = np.rot90(arrays["tall"], 1)  # a quarter turn counter-clockwise: 40 x 64, then the centre crop
    assert np.array_equal(tall, turned[4:36, 2:62])
    plain = run("skip_flat_photos.py", tmp_path / "folder", tmp_path / "plain", "--hr-size", "32x60")
    assert plain.returncode == 0, plain.stderr
    written = sorted(p.relative_to(tmp_path / "plain").as_posix() for p in (tmp_path / "plain").rglob("*.png"))
    assert written == ["test/wide.png"]  # no turning without --portrait; the small photo never fits


def per_image_csv(path, losses: dict[str, dict[float, float]]) -> None:
    """A ``pcsr eval --out`` CSV: each image's plain k = 0 row at 30 dB and one row per threshold."""
    columns = ["image", "model", "setting", "k", "psnr", "heavy_share", "gflops_fvcore", "gflops_paper",
               "pct_fvcore", "pct_paper", "skip_flat", "skipped_share"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for image, by_threshold in [*losses.items(), ("mean", {})]:
            writer.writerow({"image": image, "model": "pcsr", "setting": "k", "k": 0, "psnr": 30.0,
                             "gflops_paper": 10.0})
            for threshold, loss in by_threshold.items():
                writer.writerow({"image": image, "model": "pcsr", "setting": "k", "k": 0, "psnr": 30.0 - loss,
                                 "gflops_paper": 8.0, "skip_flat": threshold, "skipped_share": threshold})


def test_leave_one_out_picks_on_the_other_photos_only(tmp_path):
    table = tmp_path / "images.csv"
    per_image_csv(table, {"a.png": {0.1: 0.01, 0.2: 0.03, 0.3: 0.20},
                          "b.png": {0.1: 0.02, 0.2: 0.05, 0.3: 0.06},
                          "c.png": {0.1: 0.03, 0.2: 0.09, 0.3: 0.30}})
    chosen = {}
    for image in ("a", "b", "c.png"):
        done = run("skip_flat_pick.py", table, "--leave-out", image)
        assert done.returncode == 0, done.stderr
        chosen[image] = float(done.stdout)
    # mean losses without a: 0.025 / 0.07 / 0.18 dB; without b: 0.02 / 0.06 / 0.25; without c: 0.015 / 0.04 / 0.13
    assert chosen == {"a": pytest.approx(0.1), "b": pytest.approx(0.1), "c.png": pytest.approx(0.2)}
    # (all three together: 0.02 / 0.057 / 0.187 -> 0.1; leaving c out is what lets 0.2 through)


def test_leave_one_out_refuses_an_unknown_photo_and_an_impossible_budget(tmp_path):
    table = tmp_path / "images.csv"
    per_image_csv(table, {"a.png": {0.1: 0.01}, "b.png": {0.1: 0.30}})
    unknown = run("skip_flat_pick.py", table, "--leave-out", "z")
    assert unknown.returncode != 0 and "no image 'z'" in unknown.stderr
    too_tight = run("skip_flat_pick.py", table, "--leave-out", "a")
    assert too_tight.returncode != 0 and "stays within 0.05 dB" in too_tight.stderr
