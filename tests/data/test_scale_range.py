"""A scale range in the training crops: one draw per crop, queries and cells of that crop's own scale,
batches mixing scales; the fixed integer scale keeps its crops; bad ranges refused by name."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from pcsr_lightning.data.bicubic import imresize, make_pair
from pcsr_lightning.data.datamodule import SRDataModule, TrainCrops, augment, check_scale
from pcsr_lightning.data.sources import SamplePhotos
from pcsr_lightning.models.sampler import make_cell, make_coord


@pytest.fixture(scope="module")
def photo():
    return SamplePhotos(["astronaut"])


@pytest.mark.parametrize("scale", [4, 4.0, [4, 4]])
def test_a_fixed_integer_scale_draws_the_crops_of_before(photo, scale):
    """The draws of the integer-scale crops as they were: top, left, symmetry, then the query subset."""
    torch.manual_seed(5)
    item = TrainCrops(photo, scale=scale, queries=100)[0]
    torch.manual_seed(5)
    img = photo.load(0)
    top, left = int(torch.randint(0, img.shape[1] - 127, ())), int(torch.randint(0, img.shape[2] - 127, ()))
    hr = augment(img[:, top : top + 128, left : left + 128], int(torch.randint(0, 8, ())))
    hr, lr = make_pair(hr.contiguous(), 4)
    idx = torch.randperm(128 * 128)[:100]
    assert set(item) == {"lr", "hr", "idx"}
    assert torch.equal(item["hr"], hr) and torch.equal(item["lr"], lr) and torch.equal(item["idx"], idx)


def test_each_crop_of_a_range_has_its_own_scale(photo):
    torch.manual_seed(0)
    data = TrainCrops(photo, scale=[1, 4], lr_patch=16, queries=200, crops_per_image=16)
    batch = next(iter(DataLoader(data, batch_size=16)))
    assert batch["lr"].shape == (16, 3, 16, 16)
    assert batch["coord"].shape == batch["cell"].shape == (16, 200, 2) and batch["target"].shape == (16, 200, 3)
    sizes = (batch["scale"] * 16).round().long().tolist()
    assert all(16 <= s <= 64 for s in sizes) and len(set(sizes)) > 4   # mixed scales in one batch
    for cell, size in zip(batch["cell"], sizes):
        assert torch.equal(cell, make_cell((size, size), 200))        # 2 / h_hr of that crop


def test_a_range_crop_is_the_bicubic_of_its_hr_queries(photo):
    """The LR is the crop's bicubic to lr_patch, the targets are its HR pixels at their coordinates."""
    torch.manual_seed(1)
    data = TrainCrops(photo, scale=[2, 3], lr_patch=16, queries=16 * 16, augment=False)
    item = data[0]
    torch.manual_seed(1)
    scale = 2 + float(torch.rand(()))
    size = round(16 * scale)
    img = photo.load(0)
    top, left = int(torch.randint(0, img.shape[1] - size + 1, ())), int(torch.randint(0, img.shape[2] - size + 1, ()))
    hr = img[:, top : top + size, left : left + size].contiguous()
    idx = torch.randperm(size * size)[: 16 * 16]
    assert torch.equal(item["lr"], imresize(hr, (16, 16)))
    assert torch.equal(item["coord"], make_coord((size, size))[idx])
    assert torch.equal(item["target"], hr.flatten(1).t()[idx])
    assert float(item["scale"]) == pytest.approx(size / 16)


@pytest.mark.parametrize("bad", [[4, 1], [0.5, 2], ["a", 2], [1, 2, 3], [1, 1], "x4", None, 1, True, [1, float("nan")]])
def test_bad_scales_are_refused_by_name(photo, bad):
    with pytest.raises(ValueError, match="data.scale must be"):
        check_scale(bad)
    with pytest.raises(ValueError, match="data.scale must be"):
        SRDataModule(photo, photo, scale=bad, queries=64)


def test_a_range_needs_queries_every_crop_has(photo):
    with pytest.raises(ValueError, match=r"data.queries must be in \[1, 1024\]"):
        SRDataModule(photo, photo, scale=[1, 4], queries=None)
    with pytest.raises(ValueError, match=r"data.queries must be in \[1, 1024\]"):
        SRDataModule(photo, photo, scale=[1, 4], queries=2000)
    with pytest.raises(ValueError, match="set data.queries"):
        TrainCrops(photo, scale=[1, 4])


def test_validation_scales(photo):
    one = SRDataModule(photo, photo, scale=4)
    assert one.val_scales == (4,) and set(one.val_dataloader().dataset[0]) == {"lr", "hr"}
    ranged = SRDataModule(photo, photo, scale=[1, 4], queries=64, val_crop=60)
    assert ranged.val_scales == (2, 3, 4)
    assert SRDataModule(photo, photo, scale=[1.2, 1.8], queries=64).val_scales == (1.8,)
    loaders = SRDataModule(photo, photo, scale=[1, 4], queries=64, val_crop=60, val_scales=[2, 2.5]).val_dataloader()
    items = [loader.dataset[0] for loader in loaders]
    assert [i["tag"] for i in items] == ["_x2", "_x2.5"]
    assert [tuple(i["lr"].shape[-2:]) for i in items] == [(30, 30), (24, 24)]
    for bad in ([1, 2], [2, 2], "2", [2, "x"]):
        with pytest.raises(ValueError, match="data.val_scales"):
            SRDataModule(photo, photo, scale=[1, 4], queries=64, val_scales=bad)
