"""Training data: the DIV2K preparation on a generated folder with the real layout, image folders with
bad files, the embedded sample photos, crops and queries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.data.datamodule import SRDataModule, TrainCrops, augment
from pcsr_lightning.data.div2k import DIV2K, crop_positions, div2k_valid
from pcsr_lightning.data.sources import SAMPLE_TRAIN, SAMPLE_VAL, ImageFolder, SamplePhotos


def write_png(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def div2k_root(tmp_path):
    root = tmp_path / "DIV2K"
    (root / "DIV2K_train_HR").mkdir(parents=True)
    (root / "DIV2K_valid_HR").mkdir()
    (root / "DIV2K_train_LR_bicubic" / "X4").mkdir(parents=True)
    write_png(root / "DIV2K_train_HR" / "0001.png", 200, 260, 1)
    write_png(root / "DIV2K_train_HR" / "0002.png", 140, 150, 2)
    write_png(root / "DIV2K_valid_HR" / "0801.png", 96, 120, 3)
    return root


def expected_count(h, w, rescales=(1.0, 0.9, 0.8, 0.7, 0.6)):
    total = 0
    for r in rescales:
        hh, ww = round(h * r), round(w * r)
        total += len(crop_positions(hh, 128, 64)) * len(crop_positions(ww, 128, 64))
    return total


def test_crop_positions_cover_the_border():
    assert crop_positions(256, 128, 64) == [0, 64, 128]
    assert crop_positions(200, 128, 64) == [0, 64, 72]
    assert crop_positions(100, 128, 64) == []


def test_div2k_preparation_counts_and_resumes(div2k_root):
    data = DIV2K(div2k_root, progress=False)
    data.prepare()
    assert len(data) == expected_count(200, 260) + expected_count(140, 150)
    first = data.load(0)
    assert first.shape == (3, 128, 128)
    original = np.asarray(Image.open(div2k_root / "DIV2K_train_HR" / "0001.png"))
    assert torch.equal((first * 255).round().byte().permute(1, 2, 0), torch.from_numpy(original[:128, :128].copy()))
    # Interrupted preparation: index missing and one file lost -> only that file is rebuilt.
    cache = data.cache_dir
    index = json.loads((cache / "index.json").read_text())
    (cache / "index.json").unlink()
    lost = cache / "0002_x0.90.npy"
    lost.unlink()
    kept = cache / "0001_x1.00.npy"
    stamp = kept.stat().st_mtime_ns
    again = DIV2K(div2k_root, progress=False)
    again.prepare()
    assert lost.is_file() and kept.stat().st_mtime_ns == stamp
    assert json.loads((cache / "index.json").read_text()) == index
    valid = div2k_valid(div2k_root)
    assert len(valid) == 1 and valid.name(0) == "0801.png"


def test_div2k_datamodule_batches(div2k_root):
    dm = SRDataModule(DIV2K(div2k_root, progress=False), div2k_valid(div2k_root), batch_size=4, queries=100)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["lr"].shape == (4, 3, 32, 32) and batch["hr"].shape == (4, 3, 128, 128)
    assert batch["idx"].shape == (4, 100)
    val = next(iter(dm.val_dataloader()))
    assert val["hr"].shape == (1, 3, 96, 120) and val["lr"].shape == (1, 3, 24, 30)


def test_div2k_missing_layout_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="DIV2K_train_HR"):
        DIV2K(tmp_path)


def test_lr_is_float_bicubic_of_the_augmented_crop():
    crops = TrainCrops(SamplePhotos(["astronaut"]), queries=None)
    item = crops[0]
    assert item["idx"].shape == (128 * 128,)
    assert torch.allclose(item["lr"], imresize(item["hr"], (32, 32)))
    assert not torch.equal(item["lr"], (item["lr"] * 255).round() / 255)  # not rounded to 8 bits
    img = torch.rand(3, 16, 16)
    variants = {tuple(augment(img, c).flatten()[:5].tolist()) for c in range(8)}
    assert len(variants) == 8


def test_image_folder_errors_and_skips(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolder(empty)
    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "good.png", 140, 160)
    write_png(folder / "small.png", 60, 200)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    source = ImageFolder(folder)
    with pytest.warns(UserWarning) as caught:
        source.keep_at_least(128)
    text = " ".join(str(w.message) for w in caught)
    assert "small.png" in text and "broken.jpg" in text
    assert [f.name for f in source.files] == ["good.png"]
    only_small = tmp_path / "small"
    only_small.mkdir()
    write_png(only_small / "a.png", 50, 50)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable image"):
        ImageFolder(only_small).keep_at_least(128)


def test_image_folder_keeps_decoded_images_within_budget(tmp_path, monkeypatch):
    import pcsr_lightning.data.sources as sources
    from pcsr_lightning.io.images import read_image

    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "a.png", 140, 150, 1)
    write_png(folder / "b.png", 130, 160, 2)
    decoded = []
    real = sources.read_image_raw
    monkeypatch.setattr(sources, "read_image_raw", lambda p: decoded.append(p.name) or real(p))
    one_image_mb = 3 * 140 * 150 / 2**20
    source = ImageFolder(folder, cache_mb=one_image_mb)  # room for a.png only
    for _ in range(3):
        assert torch.equal(source.load(0), read_image(folder / "a.png"))
        assert source.load(1).dtype == torch.float32
    assert decoded == ["a.png", "b.png", "b.png", "b.png"]
    assert source.load_raw(0).dtype == torch.uint8  # 4x smaller than float in memory
    crops = TrainCrops(source, crops_per_image=2, augment=False)
    hr = crops[0]["hr"]
    assert hr.dtype == torch.float32 and 0 <= float(hr.min()) and float(hr.max()) <= 1
    assert torch.equal(hr, (hr * 255).round() / 255)  # exactly the 8-bit values / 255
    with pytest.raises(ValueError, match="cache_mb"):
        ImageFolder(folder, cache_mb=-1)


def test_image_corrupted_after_setup_is_skipped_mid_epoch(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "a.png", 140, 140, 1)
    write_png(folder / "b.png", 140, 140, 2)
    source = ImageFolder(folder)
    source.keep_at_least(128)
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    crops = TrainCrops(source, crops_per_image=1)
    with pytest.warns(UserWarning, match="a.png"):
        item = crops[0]
    assert item["hr"].shape == (3, 128, 128)


def test_sample_photos_split_is_offline_and_disjoint():
    assert not set(SAMPLE_TRAIN) & set(SAMPLE_VAL)
    assert {"motorcycle_left", "motorcycle_right"} <= set(SAMPLE_TRAIN)
    val = SamplePhotos(SAMPLE_VAL)
    assert [val.load(i).shape[0] for i in range(len(val))] == [3, 3]
    with pytest.raises(ValueError, match="unknown"):
        SamplePhotos(["no_such_photo"]).load(0)


def test_table_default_photos_are_the_held_out_ones(tmp_path):
    from pcsr_lightning.data.samples import materialize_samples

    folder = materialize_samples(tmp_path / "samples")
    assert sorted(p.stem for p in folder.iterdir()) == sorted(SAMPLE_VAL)
    materialize_samples(tmp_path / "all", SAMPLE_TRAIN[:1] + ("motorcycle_left",))  # the stereo pair loads too
    assert (tmp_path / "all" / "motorcycle_left.png").is_file()
