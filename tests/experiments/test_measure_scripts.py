"""The measurements behind the README's DIV2K and training-speed figures, on tiny settings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from experiment_scripts import load_script

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
