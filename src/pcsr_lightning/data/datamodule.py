"""Training crops and validation pairs, and the LightningDataModule that serves them.

Training item: a random HR crop of ``lr_patch * scale`` pixels (128 at x4), optionally taken from the
photo shrunk by a random factor of ``hr_scales`` (the paper rescales its DIV2K photos by 1, 0.9, ..., 0.6
before cutting sub-images; this does the same for any folder, crop by crop), one of the 8 flips /
transposes, its LR by MATLAB-style bicubic in float (not rounded), and the indices of the HR pixels
used as queries (all of them, or a random subset of ``queries``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from pcsr_lightning.data.bicubic import imresize, make_pair
from pcsr_lightning.data.sources import HRSource
from pcsr_lightning.io.images import ImageReadError, as_float
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

    def __init__(self, source: HRSource, scale: int = 4, lr_patch: int = 32, queries: int | None = None,
                 crops_per_image: int = 1, augment: bool = True, hr_scales: Sequence[float] | None = None):
        self.images = _SkipUnreadable(source)
        self.hr_scales = check_hr_scales(hr_scales)
        self.scale, self.lr_patch = int(scale), int(lr_patch)
        self.hr_patch = self.lr_patch * self.scale
        self.queries = None if queries is None else int(queries)
        if self.queries is not None and not 0 < self.queries <= self.hr_patch**2:
            raise ValueError(f"queries must be in [1, {self.hr_patch ** 2}] (or null for all), got {queries}")
        self.crops_per_image = int(crops_per_image)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images.source) * self.crops_per_image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _, img = self.images.load(index // self.crops_per_image)
        size = self.hr_patch
        h, w = img.shape[-2:]
        if h < size or w < size:
            raise ValueError(f"image {tuple(img.shape[-2:])} is smaller than a {size}x{size} crop")
        factor = self.draw_factor(h, w)
        window = shrink_window(size, factor)
        top = int(torch.randint(0, h - window + 1, ()))
        left = int(torch.randint(0, w - window + 1, ()))
        hr = as_float(img[:, top : top + window, left : left + window].contiguous())
        if factor != 1.0:
            hr = shrunk_crop(hr, size)
        if self.augment:
            hr = augment(hr, int(torch.randint(0, 8, ())))
        hr, lr = make_pair(hr.contiguous(), self.scale)
        n = size * size
        idx = torch.arange(n) if self.queries is None else torch.randperm(n)[: self.queries]
        return {"lr": lr, "hr": hr, "idx": idx}

    def draw_factor(self, h: int, w: int) -> float:
        """One of ``hr_scales`` at random among those whose source window fits the photo (1 without them)."""
        if self.hr_scales is None:
            return 1.0
        fits = [f for f in self.hr_scales if shrink_window(self.hr_patch, f) <= min(h, w)]
        if not fits:
            return 1.0
        return fits[int(torch.randint(0, len(fits), ()))]


class ValImages(Dataset):
    """Whole validation images (or a centre crop of ``crop`` HR pixels), cropped to a multiple of the scale."""

    def __init__(self, source: HRSource, scale: int = 4, crop: int | None = None, limit: int | None = None):
        self.source, self.scale, self.crop = source, int(scale), crop
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
        return {"lr": lr, "hr": hr.contiguous()}


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

    def __init__(self, train: HRSource, val: HRSource, scale: int = 4, lr_patch: int = 32, batch_size: int = 16,
                 queries: int | None = None, crops_per_image: int = 1, num_workers: int = 0,
                 val_crop: int | None = None, val_images: int | None = None, pin_memory: bool | None = None,
                 hr_scales: Sequence[float] | None = None):
        super().__init__()
        self.hr_scales = check_hr_scales(hr_scales)
        scale, lr_patch = count(scale, "scale", 2), count(lr_patch, "lr_patch")
        batch_size = count(batch_size, "batch_size")
        crops_per_image, num_workers = count(crops_per_image, "crops_per_image"), count(num_workers, "num_workers", 0)
        hr_patch = lr_patch * scale
        if queries is not None and not (isinstance(queries, int) and 0 < queries <= hr_patch**2):
            raise ValueError(f"queries must be in [1, {hr_patch ** 2}] (the pixels of a {hr_patch}x{hr_patch} "
                             f"crop) or null for all, got {queries}")
        if val_crop is not None and count(val_crop, "val_crop") < scale:
            raise ValueError(f"val_crop must be at least the scale ({scale}) or null, got {val_crop}")
        if val_images is not None:
            count(val_images, "val_images")
        self.train_source, self.val_source = train, val
        self.scale, self.lr_patch, self.batch_size = int(scale), int(lr_patch), int(batch_size)
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
        self.train_source.keep_at_least(self.lr_patch * self.scale)
        self.val_source.keep_at_least(self.scale)
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

    def val_dataloader(self) -> DataLoader:
        data = ValImages(self.val_source, self.scale, self.val_crop, self.val_images)
        return DataLoader(data, batch_size=1, num_workers=self.num_workers, pin_memory=self.pinned())

    def pinned(self) -> bool:
        strategy = getattr(self.trainer, "strategy", None)  # no trainer attached: plain CPU loading
        device = strategy.root_device.type if strategy is not None else "cpu"
        return pin_memory_for(self.pin_memory, device)
