"""Training crops and validation pairs, and the LightningDataModule that serves them.

Training item: a random HR crop of ``lr_patch * scale`` pixels (128 at x4), optionally taken from the
photo shrunk by a random factor of ``hr_scales`` (the paper rescales its DIV2K photos by 1, 0.9, ..., 0.6
before cutting sub-images; this does the same for any folder, crop by crop), one of the 8 flips /
transposes, its LR by MATLAB-style bicubic in float (not rounded), and the indices of the HR pixels
used as queries (all of them, or a random subset of ``queries``).

With a scale range ``[min, max]`` (one model for every scale, as the authors' any-scale training does)
each crop draws its own s ~ U(min, max): an HR crop of round(lr_patch * s) pixels, its LR by the same
bicubic to ``lr_patch`` pixels, and ``queries`` HR pixels at random, so that crops of different scales
batch together; the item then carries the queries' coordinates, cells and colours instead of the HR crop.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from numbers import Real

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from pcsr_lightning.data.bicubic import imresize, make_pair
from pcsr_lightning.data.sources import HRSource
from pcsr_lightning.io.images import ImageReadError, as_float
from pcsr_lightning.models.sampler import make_cell, make_coord
from pcsr_lightning.models.tails import count


def augment(img: torch.Tensor, code: int) -> torch.Tensor:
    """One of the 8 symmetries of the square: bit 0 = horizontal flip, 1 = vertical flip, 2 = transpose."""
    if code & 1:
        img = img.flip(-1)
    if code & 2:
        img = img.flip(-2)
    if code & 4:
        img = img.transpose(-1, -2)
    return img


SHRINK_MARGIN = 4  # HR pixels cut from each side after a shrink: beyond the reach of the filter's border padding


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        return None
    return float(value)


def check_scale(scale) -> tuple[float, float]:
    """``data.scale`` as (min, max): one number (> 1; an integer keeps the fixed-scale crops) or a range
    ``[min, max]`` with 1 <= min <= max drawn from per training crop."""
    if isinstance(scale, Sequence) and not isinstance(scale, str):
        values = [_number(v) for v in scale]
        if len(values) != 2 or None in values or not 1.0 <= values[0] <= values[1] or not values[1] > 1.0:
            raise ValueError(f"data.scale must be a number > 1 or a range [min, max] with 1 <= min <= max, "
                             f"got {list(scale)!r}")
        return values[0], values[1]
    value = _number(scale)
    if value is None or not value > 1.0:
        raise ValueError(f"data.scale must be a number > 1 or a range [min, max] with 1 <= min <= max, "
                         f"got {scale!r}")
    return value, value


def plain(scale: float) -> float | int:
    """A whole-number scale as an int (x4, not x4.0): the fixed-scale code paths keep their integer."""
    return int(scale) if float(scale).is_integer() else float(scale)


def check_val_scales(scale, val_scales) -> tuple[float | int, ...]:
    """The scales the validation images are evaluated at: ``data.val_scales``, or by default the fixed
    scale, or a range's whole scales from 2 (its maximum when it holds none)."""
    low, high = check_scale(scale)
    if val_scales is None:
        if low == high:
            return (plain(low),)
        whole = tuple(range(max(2, math.ceil(low)), math.floor(high) + 1))
        return whole or (plain(high),)
    values = [_number(v) for v in val_scales] if isinstance(val_scales, Sequence) \
        and not isinstance(val_scales, str) else [None]
    if not values or None in values or not all(v > 1.0 for v in values) or len(set(values)) != len(values):
        raise ValueError(f"data.val_scales must be a list of distinct scales > 1 or null, got {val_scales!r}")
    return tuple(plain(v) for v in values)


def stage_scale(scale, val_scales=None) -> float | int:
    """The one scale a stage works at outside validation (its cost summary, the k sweep): a fixed scale
    itself, a range's largest validation scale."""
    low, high = check_scale(scale)
    return plain(low) if low == high else max(check_val_scales(scale, val_scales))


def scale_tag(scale: float) -> str:
    """The suffix of one validation scale's metrics: ``_x2``, ``_x2.5``."""
    return f"_x{float(scale):g}"


def check_hr_scales(hr_scales: Sequence[float] | None) -> tuple[float, ...] | None:
    """The shrink factors of the training photos: each in (0, 1] (1: the photo as stored)."""
    if hr_scales is None:
        return None
    scales = tuple(float(s) for s in hr_scales)
    if not scales or not all(0.0 < s <= 1.0 for s in scales):
        raise ValueError(f"hr_scales must be a non-empty list of factors in (0, 1] or null, got {list(hr_scales)}")
    return scales


def shrunk_crop(window: torch.Tensor, size: int) -> torch.Tensor:
    """A square source ``window`` (float CHW in [0, 1]) shrunk to a ``size`` crop: MATLAB-style bicubic (the
    DIV2K rescale's) to the crop plus its margins, the margins cut, rounded to 8-bit levels like a stored
    photo."""
    side = size + 2 * SHRINK_MARGIN
    out = imresize(window, (side, side))
    out = out[:, SHRINK_MARGIN : SHRINK_MARGIN + size, SHRINK_MARGIN : SHRINK_MARGIN + size]
    return (out.clamp(0.0, 1.0) * 255.0).round() / 255.0


def shrink_window(size: int, factor: float) -> int:
    """Source pixels on a side that shrink to a ``size`` crop plus its margins (the photo itself at 1)."""
    return size if factor == 1.0 else math.ceil((size + 2 * SHRINK_MARGIN) / factor)


class _SkipUnreadable:
    """Loads an image; an unreadable one is reported once by name and another image is used instead."""

    def __init__(self, source: HRSource):
        self.source = source
        self.bad: set[int] = set()

    def load(self, index: int) -> tuple[int, torch.Tensor]:
        """(index used, raw image: uint8 where the source keeps it so, see ``HRSource.load_raw``)."""
        n = len(self.source)
        for shift in range(n):
            i = (index + shift) % n
            if i in self.bad:
                continue
            try:
                return i, self.source.load_raw(i)
            except ImageReadError as err:
                self.bad.add(i)
                warnings.warn(f"skipping unreadable image during training: {err}", stacklevel=2)
        raise RuntimeError("every training image is unreadable")


class TrainCrops(Dataset):
    """``crops_per_image`` random crops per source image and epoch (1 for prepared sub-images)."""

    def __init__(self, source: HRSource, scale=4, lr_patch: int = 32, queries: int | None = None,
                 crops_per_image: int = 1, augment: bool = True, hr_scales: Sequence[float] | None = None):
        self.images = _SkipUnreadable(source)
        self.hr_scales = check_hr_scales(hr_scales)
        self.low, self.high = check_scale(scale)
        self.fixed = self.low == self.high and self.low.is_integer()  # the integer-scale crops of old
        self.lr_patch = int(lr_patch)
        self.scale = int(self.high) if self.fixed else None
        self.hr_patch = round(self.lr_patch * self.high)  # the largest crop
        smallest = round(self.lr_patch * self.low)
        self.queries = None if queries is None else int(queries)
        if self.queries is None and not self.fixed:
            raise ValueError(f"data.scale={list((self.low, self.high))} gives crops of {smallest} to "
                             f"{self.hr_patch} HR pixels: set data.queries (at most {smallest ** 2}) so that "
                             "every crop of a batch has as many query pixels")
        limit = self.hr_patch**2 if self.fixed else smallest**2
        if self.queries is not None and not 0 < self.queries <= limit:
            raise ValueError(f"queries must be in [1, {limit}] (or null for all), got {queries}")
        self.crops_per_image = int(crops_per_image)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images.source) * self.crops_per_image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _, img = self.images.load(index // self.crops_per_image)
        if self.fixed:
            size, scale = self.hr_patch, None
        else:
            scale = self.low if self.low == self.high else \
                self.low + (self.high - self.low) * float(torch.rand(()))
            size = round(self.lr_patch * scale)
        h, w = img.shape[-2:]
        if h < size or w < size:
            raise ValueError(f"image {tuple(img.shape[-2:])} is smaller than a {size}x{size} crop")
        factor = self.draw_factor(h, w, size)
        window = shrink_window(size, factor)
        top = int(torch.randint(0, h - window + 1, ()))
        left = int(torch.randint(0, w - window + 1, ()))
        hr = as_float(img[:, top : top + window, left : left + window].contiguous())
        if factor != 1.0:
            hr = shrunk_crop(hr, size)
        if self.augment:
            hr = augment(hr, int(torch.randint(0, 8, ())))
        n = size * size
        if self.fixed:
            hr, lr = make_pair(hr.contiguous(), self.scale)
            idx = torch.arange(n) if self.queries is None else torch.randperm(n)[: self.queries]
            return {"lr": lr, "hr": hr, "idx": idx}
        hr = hr.contiguous()
        lr = imresize(hr, (self.lr_patch, self.lr_patch))
        idx = torch.randperm(n)[: self.queries]
        return {"lr": lr, "coord": make_coord((size, size))[idx], "cell": make_cell((size, size), idx.numel()),
                "target": hr.flatten(1).t()[idx], "scale": torch.tensor(size / self.lr_patch)}

    def draw_factor(self, h: int, w: int, size: int | None = None) -> float:
        """One of ``hr_scales`` at random among those whose source window fits the photo (1 without them)."""
        if self.hr_scales is None:
            return 1.0
        size = self.hr_patch if size is None else size
        fits = [f for f in self.hr_scales if shrink_window(size, f) <= min(h, w)]
        if not fits:
            return 1.0
        return fits[int(torch.randint(0, len(fits), ()))]


class ValImages(Dataset):
    """Whole validation images (or a centre crop of ``crop`` HR pixels), cropped to cover whole LR pixels
    at ``scale``; ``tag`` names the scale in the metrics when several are validated (``scale_tag``)."""

    def __init__(self, source: HRSource, scale: float = 4, crop: int | None = None, limit: int | None = None,
                 tag: str = ""):
        self.source, self.scale, self.crop, self.tag = source, plain(scale), crop, tag
        self.images = _SkipUnreadable(source)
        self.count = len(source) if limit is None else min(len(source), int(limit))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        index, img = self.images.load(index)
        h, w = img.shape[-2:]
        if self.crop is not None:
            ch, cw = min(h, self.crop), min(w, self.crop)
            top, left = (h - ch) // 2, (w - cw) // 2
            img, h, w = img[:, top : top + ch, left : left + cw], ch, cw
        if h < self.scale or w < self.scale:
            raise ValueError(f"validation image {self.source.name(index)} is too small for x{self.scale}")
        hr, lr = make_pair(as_float(img), self.scale)
        item = {"lr": lr, "hr": hr.contiguous()}
        return {**item, "scale": torch.tensor(float(self.scale)), "tag": self.tag} if self.tag else item


def per_device_batch(batch_size: int, world_size: int) -> int:
    """Each DDP process's share of the global batch, so that the optimizer step sees ``batch_size`` crops
    however many devices train (the paper's 16 on one GPU or 4 x 4)."""
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if batch_size % world_size:
        raise ValueError(f"the global batch_size={batch_size} does not split over {world_size} processes "
                         "(devices x nodes): choose a batch size that is a multiple of it")
    return batch_size // world_size


def pin_memory_for(setting: bool | None, device_type: str) -> bool:
    """Page-locked batches speed up host-to-GPU copies and only cost memory elsewhere: on by default
    exactly when training on CUDA."""
    return device_type == "cuda" if setting is None else bool(setting)


class SRDataModule(L.LightningDataModule):
    """Train on ``train`` (an HRSource), validate on ``val``; ``batch_size`` crops per optimizer step in all,
    split evenly over the DDP processes of the trainer that runs it."""

    def __init__(self, train: HRSource, val: HRSource, scale=4, lr_patch: int = 32, batch_size: int = 16,
                 queries: int | None = None, crops_per_image: int = 1, num_workers: int = 0,
                 val_crop: int | None = None, val_images: int | None = None, pin_memory: bool | None = None,
                 hr_scales: Sequence[float] | None = None, val_scales: Sequence[float] | None = None):
        super().__init__()
        self.hr_scales = check_hr_scales(hr_scales)
        low, high = check_scale(scale)
        self.val_scales = check_val_scales(scale, val_scales)
        lr_patch = count(lr_patch, "lr_patch")
        batch_size = count(batch_size, "batch_size")
        crops_per_image, num_workers = count(crops_per_image, "crops_per_image"), count(num_workers, "num_workers", 0)
        if low == high and low.is_integer():
            hr_patch = lr_patch * int(low)
            if queries is not None and not (isinstance(queries, int) and 0 < queries <= hr_patch**2):
                raise ValueError(f"queries must be in [1, {hr_patch ** 2}] (the pixels of a {hr_patch}x{hr_patch} "
                                 f"crop) or null for all, got {queries}")
            self.scale = int(low)
        else:
            smallest = round(lr_patch * low)
            if not (isinstance(queries, int) and not isinstance(queries, bool) and 0 < queries <= smallest**2):
                raise ValueError(f"data.scale={scale!r} draws crops from {smallest} HR pixels: data.queries must be "
                                 f"in [1, {smallest ** 2}] so that every crop of a batch has as many query pixels, "
                                 f"got {queries!r}")
            self.scale = [low, high]
        if val_crop is not None and count(val_crop, "val_crop") < math.ceil(max(self.val_scales)):
            raise ValueError(f"val_crop must be at least the scale ({max(self.val_scales)}) or null, got {val_crop}")
        if val_images is not None:
            count(val_images, "val_images")
        self.train_source, self.val_source = train, val
        self.lr_patch, self.batch_size = int(lr_patch), int(batch_size)
        self.largest_crop = round(self.lr_patch * high)
        self.queries, self.crops_per_image, self.num_workers = queries, int(crops_per_image), int(num_workers)
        self.val_crop, self.val_images = val_crop, val_images
        self.pin_memory = pin_memory
        self._checked = False

    def prepare_data(self) -> None:
        self.train_source.prepare()
        self.val_source.prepare()

    def setup(self, stage: str | None = None) -> None:
        if not self._checked:
            self.check()

    def check(self, world_size: int = 1) -> None:
        """Before a run writes anything: both sources hold usable images (training ones at least a crop,
        each one left out named in a warning) and an epoch has a batch's worth of crops per process."""
        self.train_source.keep_at_least(self.largest_crop)
        self.val_source.keep_at_least(math.ceil(max(self.val_scales)))
        self._checked = True
        batch = per_device_batch(self.batch_size, world_size)
        images = self.train_source.count_if_known()
        if images is not None and images * self.crops_per_image < batch:
            raise ValueError(f"{images} training image(s) x crops_per_image={self.crops_per_image} give fewer crops "
                             f"per epoch than a batch of {batch} per process: raise data.crops_per_image or lower "
                             "the batch size")

    def train_dataloader(self) -> DataLoader:
        data = TrainCrops(self.train_source, self.scale, self.lr_patch, self.queries, self.crops_per_image,
                          hr_scales=self.hr_scales)
        world_size = self.trainer.world_size if self.trainer is not None else 1
        batch = per_device_batch(self.batch_size, world_size)
        if len(data) < batch:
            raise ValueError(f"{len(data)} training crops per epoch is fewer than a batch of {batch} per process: "
                             "raise data.crops_per_image or lower the batch size")
        return DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=self.pinned())

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader of the validation images per validation scale (a plain loader for one scale)."""
        tags = [scale_tag(s) if len(self.val_scales) > 1 else "" for s in self.val_scales]
        loaders = [DataLoader(ValImages(self.val_source, s, self.val_crop, self.val_images, tag), batch_size=1,
                              num_workers=self.num_workers, pin_memory=self.pinned())
                   for s, tag in zip(self.val_scales, tags)]
        return loaders[0] if len(loaders) == 1 else loaders

    def pinned(self) -> bool:
        strategy = getattr(self.trainer, "strategy", None)  # no trainer attached: plain CPU loading
        device = strategy.root_device.type if strategy is not None else "cpu"
        return pin_memory_for(self.pin_memory, device)
