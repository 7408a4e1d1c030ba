"""Training data: the DIV2K preparation on a generated folder with the real layout, image folders with
bad files, the embedded sample photos, crops and queries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.data.datamodule import SRDataModule, TrainCrops, augment, shrink_window, shrunk_crop
from pcsr_lightning.data.div2k import DIV2K, crop_positions, div2k_valid
from pcsr_lightning.data.samples import sample_split
from pcsr_lightning.data.sources import ImageFolder, SamplePhotos


def write_png(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def div2k_root(tmp_path):
    root = tmp_path / "DIV2K"
    (root / "DIV2K_train_HR").mkdir(parents=True)
    (root / "DIV2K_valid_HR").mkdir()
    (root / "DIV2K_valid_LR_bicubic" / "X4").mkdir(parents=True)
    write_png(root / "DIV2K_train_HR" / "0001.png", 200, 260, 1)
    write_png(root / "DIV2K_train_HR" / "0002.png", 140, 150, 2)
    write_png(root / "DIV2K_train_HR" / "0003.png", 100, 300, 4)  # too small at every rescale
    write_png(root / "DIV2K_valid_HR" / "0801.png", 96, 120, 3)
    write_png(root / "DIV2K_valid_LR_bicubic" / "X4" / "0801x4.png", 24, 30, 3)
    return root


def stored_sub_images(hr_dir, size=128, step=64, rescales=(1.0, 0.9, 0.8, 0.7, 0.6)):
    """The sub-images as they used to be cut and stored: per image and rescale, 8-bit, rows then columns."""
    subs = []
    for f in sorted(hr_dir.iterdir()):
        hr = torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1).float() / 255
        for r in rescales:
            img = hr if r == 1.0 else imresize(hr, (round(hr.shape[1] * r), round(hr.shape[2] * r)))
            arr = img.clamp(0, 1).mul(255).round().byte()
            tops, lefts = crop_positions(arr.shape[1], size, step), crop_positions(arr.shape[2], size, step)
            subs += [arr[:, top : top + size, left : left + size] for top in tops for left in lefts]
    return subs


def all_windows(data):
    return [data.load_raw(i) for i in range(len(data))]


def test_crop_positions_cover_the_border():
    assert crop_positions(256, 128, 64) == [0, 64, 128]
    assert crop_positions(200, 128, 64) == [0, 64, 72]
    assert crop_positions(100, 128, 64) == []


def test_div2k_windows_are_the_paper_sub_images_stored_once(div2k_root):
    data = DIV2K(div2k_root, workers=1, progress=False)
    data.prepare()
    expected = stored_sub_images(div2k_root / "DIV2K_train_HR")
    windows = all_windows(data)
    assert len(windows) == len(expected) == 32
    assert all(torch.equal(a, b) for a, b in zip(windows, expected))
    assert data.load(0).shape == (3, 128, 128) and data.name(1) == "0001.png@x1.00[0:128,64:192]"
    # Each rescaled image once, uint8: the packed file is the rescaled pixels and nothing else.
    pixels = sum(round(h * r) * round(w * r) for h, w in ((200, 260), (140, 150)) for r in (1.0, 0.9, 0.8, 0.7, 0.6)
                 if min(round(h * r), round(w * r)) >= 128)
    assert (data.cache_dir / "images.u8").stat().st_size == 3 * pixels
    assert sorted(p.name for p in data.cache_dir.iterdir()) == ["images.u8", "index.json"]
    valid = div2k_valid(div2k_root)
    assert len(valid) == 1 and valid.name(0) == "0801.png"


def test_div2k_parallel_preparation_matches_and_interrupted_one_resumes(div2k_root, tmp_path, monkeypatch):
    import pcsr_lightning.data.div2k as div2k

    serial = DIV2K(div2k_root, cache_dir=tmp_path / "serial", workers=1, progress=False)
    serial.prepare()
    parallel = DIV2K(div2k_root, cache_dir=tmp_path / "parallel", workers=2, progress=True)
    parallel.prepare()
    packed = (tmp_path / "serial" / "images.u8").read_bytes()
    assert (tmp_path / "parallel" / "images.u8").read_bytes() == packed
    # Interrupted after the first image: no index; the second run only does the image not yet done.
    real, calls = div2k._prepare_one, []

    def interrupted(path, entries, out):
        if calls:
            raise KeyboardInterrupt
        calls.append(path)
        return real(path, entries, out)

    monkeypatch.setattr(div2k, "_prepare_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        DIV2K(div2k_root, cache_dir=tmp_path / "resumed", workers=1, progress=False).prepare()
    assert not (tmp_path / "resumed" / "index.json").exists()
    assert (tmp_path / "resumed" / "done.txt").read_text() == "0001.png\n"
    calls.clear()
    monkeypatch.setattr(div2k, "_prepare_one", lambda *job: calls.append(job[0]) or real(*job))
    resumed = DIV2K(div2k_root, cache_dir=tmp_path / "resumed", workers=1, progress=False)
    resumed.prepare()
    assert [p.rsplit("/", 1)[-1] for p in calls] == ["0002.png"]
    assert (tmp_path / "resumed" / "images.u8").read_bytes() == packed
    assert len(resumed) == len(serial)
    # Stopped after every image was written but before the index: nothing is redone.
    real_write = div2k.write_text

    def no_index(text, path):
        if path.name == "index.json":
            raise KeyboardInterrupt
        return real_write(text, path)

    monkeypatch.setattr(div2k, "write_text", no_index)
    with pytest.raises(KeyboardInterrupt):
        DIV2K(div2k_root, cache_dir=tmp_path / "late", workers=1, progress=False).prepare()
    monkeypatch.setattr(div2k, "write_text", real_write)
    calls.clear()
    DIV2K(div2k_root, cache_dir=tmp_path / "late", workers=1, progress=False).prepare()
    assert calls == [] and (tmp_path / "late" / "images.u8").read_bytes() == packed


def test_div2k_preparation_that_cannot_fit_stops_before_writing(div2k_root, tmp_path, monkeypatch):
    from collections import namedtuple

    import pcsr_lightning.data.div2k as div2k

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(div2k.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(OSError, match=r"needs 0\.0 GB .* only 0\.0 GB free: set data.train.cache_dir"):
        DIV2K(div2k_root, cache_dir=tmp_path / "full", workers=1, progress=False).prepare()
    assert not (tmp_path / "full" / "images.u8.partial").exists()


FEW_FILES = """
import os, resource, sys
import torch
from pcsr_lightning.data.div2k import DIV2K
data = DIV2K(sys.argv[1], workers=1, progress=False)
data.prepare()
before = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (before + 4, before + 4))
for i in torch.randperm(len(data)).tolist():  # what a loader worker does, over every rescaled image
    data.load_raw(i)
print(len(data), len(os.listdir("/proc/self/fd")) - before)
"""


def test_div2k_loader_keeps_one_file_open_under_a_low_ulimit(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "DIV2K"
    (root / "DIV2K_train_HR").mkdir(parents=True)
    for i in range(8):  # 40 rescaled images, far more than the 4 files the loader may open
        write_png(root / "DIV2K_train_HR" / f"{i + 1:04d}.png", 216, 216, i)
    out = subprocess.run([sys.executable, "-c", FEW_FILES, str(root)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    windows, opened = map(int, out.stdout.split())
    assert windows == 8 * (9 + 9 + 4 + 4 + 4) and opened <= 2


def test_div2k_datamodule_batches(div2k_root):
    dm = SRDataModule(DIV2K(div2k_root, workers=1, progress=False), div2k_valid(div2k_root), batch_size=4,
                      queries=100)
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
    train, val_names = sample_split("train"), sample_split("val")
    assert not set(train) & set(val_names)
    assert {"motorcycle_left", "motorcycle_right"} <= set(train)
    val = SamplePhotos(val_names)
    assert [val.load(i).shape[0] for i in range(len(val))] == [3, 3]
    with pytest.raises(ValueError, match="unknown"):
        SamplePhotos(["no_such_photo"]).load(0)


def test_table_default_photos_are_the_held_out_ones(tmp_path):
    from pcsr_lightning.data.samples import materialize_samples

    folder = materialize_samples(tmp_path / "samples")
    assert sorted(p.stem for p in folder.iterdir()) == sorted(sample_split("val")) == ["chelsea", "rocket"]
    materialize_samples(tmp_path / "all", ["astronaut", "motorcycle_left"])  # the stereo pair loads too
    assert (tmp_path / "all" / "motorcycle_left.png").is_file()


def test_image_size_from_the_header_is_upright_like_the_decoded_image(tmp_path):
    from pcsr_lightning.data.sources import image_size
    from pcsr_lightning.io.images import read_image

    img = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # a quarter turn
    img.save(tmp_path / "turned.jpg", exif=exif)
    assert image_size(tmp_path / "turned.jpg") == tuple(read_image(tmp_path / "turned.jpg").shape[-2:]) == (60, 40)


def test_without_hr_scales_the_crop_is_the_stored_pixels():
    """No shrink factors: the same random draws as always (top, left, symmetry), the crop itself."""
    source = SamplePhotos(["astronaut"])
    torch.manual_seed(3)
    item = TrainCrops(source, queries=None)[0]
    torch.manual_seed(3)
    img = source.load(0)
    top, left = int(torch.randint(0, img.shape[1] - 127, ())), int(torch.randint(0, img.shape[2] - 127, ()))
    code = int(torch.randint(0, 8, ()))
    assert torch.equal(item["hr"], augment(img[:, top : top + 128, left : left + 128], code))


def test_hr_scales_shrink_the_window_like_the_whole_photo():
    """A 0.5 shrink of a 272-pixel window (128 + 2 x 4 margin, doubled) equals the same place of a larger
    region shrunk alike: the margin keeps the filter's padded border (MATLAB mirrors the edge) out of the crop."""
    torch.manual_seed(0)
    region = torch.rand(3, 304, 304)
    whole = imresize(region, (152, 152))
    expected = (whole[:, 12:140, 12:140].clamp(0, 1) * 255).round() / 255  # window at 16 px = 8 shrunk
    assert shrink_window(128, 0.5) == 272 and shrink_window(128, 1.0) == 128
    got = shrunk_crop(region[:, 16:288, 16:288], 128)
    assert got.shape == (3, 128, 128)
    assert (got - expected).abs().max() <= 1 / 255 + 1e-6  # a level where float rounding falls either side
    assert (got != expected).float().mean() < 0.01
    cut_too_close = imresize(region[:, 24:280, 24:280], (128, 128))
    assert (cut_too_close - whole[:, 12:140, 12:140])[:, 0].abs().max() > 0.01  # what the margin avoids


def test_train_crops_with_hr_scales(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_png(folder / "big.png", 300, 300, 1)
    big = ImageFolder(folder)
    torch.manual_seed(5)
    item = TrainCrops(big, queries=None, augment=False, hr_scales=[0.5])[0]
    torch.manual_seed(5)
    assert int(torch.randint(0, 1, ())) == 0  # the factor's draw (one fits)
    top, left = int(torch.randint(0, 300 - 272 + 1, ())), int(torch.randint(0, 300 - 272 + 1, ()))
    window = big.load(0)[:, top : top + 272, left : left + 272]
    assert torch.equal(item["hr"], shrunk_crop(window, 128))
    assert torch.equal(item["hr"], (item["hr"] * 255).round() / 255)
    assert torch.allclose(item["lr"], imresize(item["hr"], (32, 32)))
    # a photo too small for the 0.5 window is only ever cropped as stored
    small = TrainCrops(big, hr_scales=[0.5, 1.0])
    assert small.draw_factor(200, 300) == 1.0 and small.draw_factor(272, 272) in (0.5, 1.0)
    for bad in ([], [0.0], [1.5], [-0.5]):
        with pytest.raises(ValueError, match="hr_scales"):
            SRDataModule(big, big, hr_scales=bad)
