"""Where HR training and validation images come from.

Every source is a small indexable collection of HR images: ``len(source)``, ``source.load(i)`` ->
(3,H,W) float in [0,1], ``source.name(i)``, and ``prepare()`` for one-off work done before training
(DIV2K's sub-image cache). Sources are built from Hydra configs (``conf/data``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pcsr_lightning.extras import need
from pcsr_lightning.io.images import ImageReadError, as_float, list_images, read_image_raw


class HRSource:
    """Base class: an indexable set of HR images."""

    def prepare(self) -> None:
        """One-off preparation (downloads never happen); a no-op unless a source needs a cache."""

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> torch.Tensor:
        """(3,H,W) float32 in [0,1]."""
        raise NotImplementedError

    def load_raw(self, index: int) -> torch.Tensor:
        """The cheapest form of the image: uint8 where the source has it (crop first, then ``as_float``)."""
        return self.load(index)

    def name(self, index: int) -> str:
        raise NotImplementedError

    def keep_at_least(self, size: int) -> None:
        """Drop images smaller than ``size`` on a side (or unreadable), warning with their names."""

    def count_if_known(self) -> int | None:
        """``len(self)`` when it costs nothing (None where counting would prepare a cache)."""
        return len(self)


def sample_photo(name: str) -> torch.Tensor:
    """A photo shipped inside scikit-image (no download), as (3,H,W) float in [0,1]; grayscale repeated to RGB.

    ``motorcycle_left`` / ``motorcycle_right`` are the two views of scikit-image's stereo pair (one scene:
    keep both in one split). Which photos train and which are held out is set in conf/data/samples.yaml.
    """
    skimage_data = need("skimage.data", "the sample photos")  # slow to import; only the sample photos need it

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage_data.stereo_motorcycle()
        arr = left if name == "motorcycle_left" else right
    else:
        loader = getattr(skimage_data, name, None)
        if loader is None or not callable(loader):
            raise ValueError(f"unknown scikit-image sample photo {name!r}")
        arr = loader()
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return as_float(torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1))


class SamplePhotos(HRSource):
    """Photos shipped inside scikit-image (offline), by name (``sample_photo``)."""

    def __init__(self, names: Sequence[str]):
        if not names:
            raise ValueError("SamplePhotos needs at least one photo name")
        self.names = list(names)
        self._images: list[torch.Tensor] | None = None

    def _all(self) -> list[torch.Tensor]:
        if self._images is None:
            self._images = [sample_photo(n) for n in self.names]
        return self._images

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> torch.Tensor:
        return self._all()[index]

    def name(self, index: int) -> str:
        return self.names[index]

    def keep_at_least(self, size: int) -> None:
        keep = [i for i, img in enumerate(self._all()) if min(img.shape[-2:]) >= size]
        for i in sorted(set(range(len(self.names))) - set(keep)):
            warnings.warn(f"skipping sample photo {self.names[i]!r}: smaller than {size} pixels", stacklevel=2)
        self.names = [self.names[i] for i in keep]
        self._images = [self._images[i] for i in keep]
        if not self.names:
            raise ValueError(f"no sample photo is at least {size}x{size}")


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of the image as ``read_image`` gives it (upright by its EXIF orientation), from the file
    header without decoding; ImageReadError when it cannot be opened."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            # Orientations 5-8 are a quarter turn (with or without a mirror): height and width swap.
            return (w, h) if img.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (h, w)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


class ImageFolder(HRSource):
    """Every image in a folder (not recursive): DIV2K_valid_HR, Flickr2K, a user's photos."""

    def __init__(self, path: str | Path, limit: int | None = None, cache_mb: float = 2048):
        if path is None or str(path) in ("", "???"):
            raise ValueError("ImageFolder needs a path (set data.train.path / data.val.path)")
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.path}")
        self.files = list_images(self.path)
        if not self.files:
            raise FileNotFoundError(f"no images (png, jpg, bmp, tif, webp, ppm) in {self.path}")
        if limit is not None:
            self.files = self.files[: int(limit)]
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        # Decoded images kept in memory (uint8) up to this budget, per data-loader worker: decoding a
        # large JPEG costs far more than cutting a crop, and training cuts many crops per image every epoch.
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[Path, torch.Tensor] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        return as_float(self.load_raw(index))

    def load_raw(self, index: int) -> torch.Tensor:
        path = self.files[index]
        img = self._cache.get(path)
        if img is None:
            img = read_image_raw(path)
            size = img.numel() * img.element_size()
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[path] = img
                self._cached_bytes += size
        return img

    def name(self, index: int) -> str:
        return self.files[index].name

    def keep_at_least(self, size: int) -> None:
        keep = []
        for f in self.files:
            try:
                h, w = image_size(f)
            except ImageReadError as err:
                warnings.warn(f"skipping {err}", stacklevel=2)
                continue
            if min(h, w) < size:
                warnings.warn(f"skipping {f}: {h}x{w} is smaller than a {size}x{size} crop", stacklevel=2)
                continue
            keep.append(f)
        if not keep:
            raise ValueError(f"no usable image of at least {size}x{size} in {self.path}")
        self.files = keep
