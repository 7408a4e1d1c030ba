"""DIV2K in its published layout, prepared the way the paper does, once, into an on-disk cache.

Layout: ``root/DIV2K_train_HR/0001.png ...`` and ``root/DIV2K_valid_HR/0801.png ...``
(``root/DIV2K_train_LR_bicubic/X4`` may be there too: it is not needed, LR crops are made on the fly
in float by MATLAB-style bicubic, as the paper does).

Preparation: each training HR image is rescaled by {1, 0.9, 0.8, 0.7, 0.6} (MATLAB-style bicubic,
stored as 8-bit like the paper's PNG sub-images) and cut into 128x128 sub-images at step 64 (plus the
last position on each axis so borders are covered). Each (image, rescale) becomes one ``.npy`` file of
sub-images, written atomically, so an interrupted preparation resumes where it stopped; ``index.json``
is written last and marks the cache complete.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.io.images import ImageReadError, as_float, list_images, read_image
from pcsr_lightning.io.files import atomic_write, write_text
from pcsr_lightning.data.sources import HRSource

RESCALES = (1.0, 0.9, 0.8, 0.7, 0.6)
CACHE_VERSION = 1


def crop_positions(length: int, size: int, step: int) -> list[int]:
    """Top-left positions of ``size`` windows at ``step``, plus the last window flush with the end."""
    if length < size:
        return []
    pos = list(range(0, length - size + 1, step))
    if pos[-1] != length - size:
        pos.append(length - size)
    return pos


def sub_images(hr: torch.Tensor, size: int, step: int) -> np.ndarray:
    """(N, size, size, 3) uint8 sub-images of a (3,H,W) float image."""
    arr = hr.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    tops, lefts = crop_positions(arr.shape[0], size, step), crop_positions(arr.shape[1], size, step)
    subs = [arr[t : t + size, l : l + size] for t in tops for l in lefts]
    return np.stack(subs) if subs else np.zeros((0, size, size, 3), np.uint8)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append .npy to a path
        np.save(fh, arr)


def cache_name(stem: str, rescale: float) -> str:
    return f"{stem}_x{rescale:.2f}.npy"


def prepare_subimages(
    hr_dir: Path, cache_dir: Path, size: int = 128, step: int = 64, rescales: Sequence[float] = RESCALES,
    progress: bool = True,
) -> Path:
    """Build (or finish building) the sub-image cache; returns the path of its ``index.json``."""
    index_path = cache_dir / "index.json"
    settings = {"version": CACHE_VERSION, "size": size, "step": step, "rescales": [float(r) for r in rescales]}
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("settings") == settings:
            return index_path
        raise ValueError(f"{cache_dir} holds sub-images prepared with {index.get('settings')}, not {settings}; "
                         "use another cache_dir")
    files = list_images(hr_dir)
    if not files:
        raise FileNotFoundError(f"no images in {hr_dir}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(f, r) for f in files for r in rescales]
    entries: list[list] = []
    skipped: list[str] = []

    def work(f: Path, r: float) -> None:
        out = cache_dir / cache_name(f.stem, r)
        if not out.is_file():
            try:
                hr = read_image(f)
            except ImageReadError as err:
                skipped.append(str(err))
                return
            if r != 1.0:
                hr = imresize(hr, (round(hr.shape[-2] * r), round(hr.shape[-1] * r)))
            subs = sub_images(hr, size, step)
            atomic_write(out, lambda tmp: _save_npy(tmp, subs))
        count = int(np.load(out, mmap_mode="r").shape[0])
        if count:
            entries.append([out.name, count])

    if progress:
        from rich.progress import Progress

        with Progress() as bar:
            task = bar.add_task(f"preparing {hr_dir.name} sub-images", total=len(jobs))
            for f, r in jobs:
                work(f, r)
                bar.advance(task)
    else:
        for f, r in jobs:
            work(f, r)
    if skipped:
        import warnings

        warnings.warn("skipped unreadable images: " + "; ".join(skipped), stacklevel=2)
    if not entries:
        raise ValueError(f"no image in {hr_dir} is at least {size}x{size}")
    write_text(json.dumps({"settings": settings, "files": entries}), index_path)
    return index_path


class DIV2K(HRSource):
    """The prepared training sub-images of ``root/DIV2K_train_HR`` (cache in ``cache_dir``)."""

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None, size: int = 128, step: int = 64,
                 rescales: Sequence[float] = RESCALES, progress: bool = True):
        if root is None or str(root) in ("", "???"):
            raise ValueError("DIV2K needs its root folder (data.root=/path/to/DIV2K)")
        self.root = Path(root).expanduser()
        self.hr_dir = self.root / "DIV2K_train_HR"
        if not self.hr_dir.is_dir():
            raise FileNotFoundError(
                f"DIV2K training images not found: {self.hr_dir} (expected the published layout "
                "DIV2K/DIV2K_train_HR/0001.png ... and DIV2K/DIV2K_valid_HR/0801.png ...)")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.root / f"DIV2K_train_HR_sub{size}_s{step}"
        self.size, self.step, self.rescales, self.progress = size, step, tuple(rescales), progress
        self._files: list[str] | None = None
        self._ends: list[int] = []
        self._open: dict[str, np.ndarray] = {}

    def prepare(self) -> None:
        prepare_subimages(self.hr_dir, self.cache_dir, self.size, self.step, self.rescales, self.progress)

    def _index(self) -> list[str]:
        if self._files is None:
            index_path = self.cache_dir / "index.json"
            if not index_path.is_file():
                self.prepare()
            files = json.loads(index_path.read_text())["files"]
            self._files = [name for name, _ in files]
            self._ends = list(np.cumsum([count for _, count in files]))
        return self._files

    def __len__(self) -> int:
        self._index()
        return int(self._ends[-1])

    def _locate(self, index: int) -> tuple[str, int]:
        files = self._index()
        k = bisect.bisect_right(self._ends, index)
        start = self._ends[k - 1] if k else 0
        return files[k], int(index - start)

    def load(self, index: int) -> torch.Tensor:
        return as_float(self.load_raw(index))

    def load_raw(self, index: int) -> torch.Tensor:
        name, j = self._locate(index)
        if name not in self._open:
            self._open[name] = np.load(self.cache_dir / name, mmap_mode="r")
        return torch.from_numpy(np.array(self._open[name][j])).permute(2, 0, 1)

    def name(self, index: int) -> str:
        name, j = self._locate(index)
        return f"{name}[{j}]"

    def keep_at_least(self, size: int) -> None:
        if size > self.size:
            raise ValueError(f"DIV2K sub-images are {self.size}x{self.size}, smaller than a {size}x{size} crop")


def div2k_valid(root: str | Path, limit: int | None = None):
    """Validation images: ``root/DIV2K_valid_HR`` (0801-0900)."""
    from pcsr_lightning.data.sources import ImageFolder

    folder = Path(root).expanduser() / "DIV2K_valid_HR"
    if not folder.is_dir():
        raise FileNotFoundError(f"DIV2K validation images not found: {folder}")
    return ImageFolder(folder, limit=limit)
