"""DIV2K in its published layout, prepared the way the paper does, once, into a compact on-disk cache.

Layout: ``root/DIV2K_train_HR/0001.png ...`` and ``root/DIV2K_valid_HR/0801.png ...``
(``root/DIV2K_train_LR_bicubic/X4`` may be there too: it is not needed, LR crops are made on the fly
in float by MATLAB-style bicubic, as the paper does).

The paper rescales each training image by {1, 0.9, 0.8, 0.7, 0.6} (MATLAB-style bicubic, 8-bit) and
cuts 128x128 sub-images at step 64 (plus the last position on each axis, so borders are covered).
Those windows overlap four times over; storing them would take ~100 MB per 2K image. Here each
rescaled image is stored once, as uint8 rows, back to back in one packed file (``images.u8``, about
27 MB per 2K image), and a window is found by its index: the same sub-images in the same order, read
from one memory map, so a loader worker holds one open file whatever the dataset size.

Preparation runs images in parallel worker processes, each writing its rescaled images at offsets
planned from the image headers. A journal records finished images, so an interrupted preparation
resumes where it stopped; ``index.json``, written last, marks the cache complete.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.data.sources import HRSource, ImageFolder, image_size
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import ImageReadError, as_float, list_images, read_image, to_uint8

RESCALES = (1.0, 0.9, 0.8, 0.7, 0.6)
CACHE_FORMAT = "rescaled-uint8"
CACHE_VERSION = 2
INDEX, PLAN, JOURNAL, PACKED = "index.json", "plan.json", "done.txt", "images.u8"


def crop_positions(length: int, size: int, step: int) -> list[int]:
    """Top-left positions of ``size`` windows at ``step``, plus the last window flush with the end."""
    if length < size:
        return []
    pos = list(range(0, length - size + 1, step))
    if pos[-1] != length - size:
        pos.append(length - size)
    return pos


@dataclass(frozen=True)
class Rescaled:
    """One rescaled training image inside the packed file: (h, w, 3) uint8 from byte ``offset``."""

    image: str
    rescale: float
    h: int
    w: int
    offset: int

    @property
    def nbytes(self) -> int:
        return self.h * self.w * 3

    def to_list(self) -> list:
        return [self.image, self.rescale, self.h, self.w, self.offset]


def rescaled_size(h: int, w: int, rescale: float) -> tuple[int, int]:
    return (h, w) if rescale == 1.0 else (round(h * rescale), round(w * rescale))


def plan_cache(files: Sequence[Path], size: int, rescales: Sequence[float]) -> tuple[list[Rescaled], list[str]]:
    """Where each rescaled image goes in the packed file, from the image headers (no decoding).

    Rescales smaller than one window hold no sub-image and are not stored. Returns the entries and
    the messages of unreadable images (skipped).
    """
    entries: list[Rescaled] = []
    skipped: list[str] = []
    offset = 0
    for f in files:
        try:
            h, w = image_size(f)
        except ImageReadError as err:
            skipped.append(str(err))
            continue
        for r in rescales:
            rh, rw = rescaled_size(h, w, r)
            if min(rh, rw) >= size:
                entries.append(Rescaled(f.name, float(r), rh, rw, offset))
                offset += rh * rw * 3
    return entries, skipped


def rescale_image(path: Path, entries: Sequence[Rescaled]) -> list[np.ndarray]:
    """The (h, w, 3) uint8 rescales of one image, rounded to 8 bits as the paper's PNG sub-images are."""
    hr = read_image(path)
    h, w = hr.shape[-2:]
    out = []
    for e in entries:
        if rescaled_size(h, w, e.rescale) != (e.h, e.w):
            raise ImageReadError(f"cannot read image {path}: decoded as {h}x{w}, which does not give the "
                                 f"planned {e.h}x{e.w} at x{e.rescale}")
        img = hr if e.rescale == 1.0 else imresize(hr, (e.h, e.w))
        out.append(to_uint8(img))
    return out


def _prepare_one(path: str, entries: list[list], packed: str) -> str | None:
    """Worker: rescale one image and write it at its planned offsets; the error message if unreadable."""
    torch.set_num_threads(1)  # one image per process: the processes are the parallelism
    items = [Rescaled(*e) for e in entries]
    try:
        arrays = rescale_image(Path(path), items)
    except ImageReadError as err:
        return str(err)
    fd = os.open(packed, os.O_WRONLY)
    try:
        for e, arr in zip(items, arrays):
            view = memoryview(np.ascontiguousarray(arr)).cast("B")
            written = 0
            while written < len(view):
                written += os.pwrite(fd, view[written:], e.offset + written)
        os.fsync(fd)  # on disk before the journal says so
    finally:
        os.close(fd)
    return None


def prepare_rescaled(
    hr_dir: Path, cache_dir: Path, size: int = 128, step: int = 64, rescales: Sequence[float] = RESCALES,
    workers: int | None = None, progress: bool = True,
) -> Path:
    """Build (or finish building) the cache of rescaled images; returns the path of its ``index.json``.

    ``workers`` processes rescale images in parallel (default: every CPU; 1 runs in this process).
    """
    cache_dir = Path(cache_dir)
    index_path = cache_dir / INDEX
    settings = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "size": size, "step": step,
                "rescales": [float(r) for r in rescales]}
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("settings") == settings:
            return index_path
        raise ValueError(f"{cache_dir} holds images prepared with {index.get('settings')}, not {settings}; "
                         "use another cache_dir")
    entries, skipped = _planned_entries(hr_dir, size, rescales)
    packed, done = _open_packed(hr_dir, cache_dir, {"settings": settings, "entries": [e.to_list() for e in entries]},
                                entries[-1].offset + entries[-1].nbytes)
    failed = _rescale_into(hr_dir, entries, done, packed, cache_dir / JOURNAL, workers, progress)
    skipped += list(failed.values())
    if skipped:
        warnings.warn("skipped unreadable images: " + "; ".join(skipped), stacklevel=2)
    kept = [e for e in entries if e.image not in failed]
    if not kept:
        raise ValueError(f"no image in {hr_dir} is at least {size}x{size}")
    os.replace(packed, cache_dir / PACKED)
    write_text(json.dumps({"settings": settings, "data": PACKED, "entries": [e.to_list() for e in kept]}),
               index_path)
    (cache_dir / PLAN).unlink(missing_ok=True)
    (cache_dir / JOURNAL).unlink(missing_ok=True)
    return index_path


def _planned_entries(hr_dir: Path, size: int, rescales: Sequence[float]) -> tuple[list[Rescaled], list[str]]:
    """Where each rescaled image goes in the packed file, and the images that could not be read."""
    files = list_images(hr_dir)
    if not files:
        raise FileNotFoundError(f"no images in {hr_dir}")
    entries, skipped = plan_cache(files, size, rescales)
    if not entries:
        raise ValueError(f"no image in {hr_dir} is at least {size}x{size}"
                         + (f" (skipped unreadable images: {'; '.join(skipped)})" if skipped else ""))
    return entries, skipped


def _open_packed(hr_dir: Path, cache_dir: Path, plan: dict, total: int) -> tuple[Path, set[str]]:
    """The partial packed file to write into and the images its journal says are done: a preparation
    with the same plan resumes; otherwise a fresh sparse file, once the disk is known to hold it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    packed, journal, plan_path = cache_dir / f"{PACKED}.partial", cache_dir / JOURNAL, cache_dir / PLAN
    if not packed.is_file() and (cache_dir / PACKED).is_file() and plan_path.is_file():
        os.replace(cache_dir / PACKED, packed)  # stopped between the rename and the index: finish from the journal
    if plan_path.is_file() and packed.is_file() and json.loads(plan_path.read_text()) == plan:
        done = {line for line in journal.read_text().splitlines() if line} if journal.is_file() else set()
        return packed, done  # a resumed preparation
    # A fresh start (or the folder's images changed since the interrupted one).
    journal.unlink(missing_ok=True)
    packed.unlink(missing_ok=True)
    free = shutil.disk_usage(cache_dir).free
    if free < total:
        raise OSError(f"preparing {hr_dir} needs {total / 1e9:.1f} GB in {cache_dir}, only "
                      f"{free / 1e9:.1f} GB free: set data.train.cache_dir to a larger disk")
    with open(packed, "wb") as fh:
        fh.truncate(total)  # sparse until written
    write_text(json.dumps(plan), plan_path)
    return packed, set()


def _rescale_into(hr_dir: Path, entries: list[Rescaled], done: set[str], packed: Path, journal: Path,
                  workers: int | None, progress: bool) -> dict[str, str]:
    """Rescale the images not yet done into ``packed`` (in ``workers`` processes), each one journalled
    when finished; returns the images that failed, with why."""
    by_image: dict[str, list[Rescaled]] = {}
    for e in entries:
        by_image.setdefault(e.image, []).append(e)
    todo = [name for name in by_image if name not in done]
    failed: dict[str, str] = {}

    def finished(name: str, error: str | None) -> None:
        if error is not None:
            failed[name] = error
            return
        with open(journal, "a") as fh:
            fh.write(name + "\n")

    jobs = [(str(hr_dir / name), [e.to_list() for e in by_image[name]], str(packed)) for name in todo]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    bar = ImageProgress(progress, f"preparing {hr_dir.name}", len(by_image), len(by_image) - len(todo))
    try:
        if workers == 1:
            for name, job in zip(todo, jobs):
                finished(name, _prepare_one(*job))
                bar.advance()
        else:
            with ProcessPoolExecutor(workers) as pool:
                futures = {pool.submit(_prepare_one, *job): name for name, job in zip(todo, jobs)}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
                    bar.advance()
    finally:
        bar.close()
    return failed


class ImageProgress:
    """A rich progress bar over images, or nothing."""

    def __init__(self, show: bool, title: str, total: int, completed: int):
        self._bar = None
        if show:

            self._bar = Progress()
            self._bar.start()
            self._task = self._bar.add_task(title, total=total, completed=completed)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class DIV2K(HRSource):
    """The paper's training sub-images of ``root/DIV2K_train_HR``: item i is the i-th 128x128 window.

    Windows run over images, then rescales, then rows, then columns, as the sub-images were cut.
    """

    def __init__(self, root: str | Path, cache_dir: str | Path | None = None, size: int = 128, step: int = 64,
                 rescales: Sequence[float] = RESCALES, workers: int | None = None, progress: bool = True):
        if root is None or str(root) in ("", "???"):
            raise ValueError("DIV2K needs its root folder (data.root=/path/to/DIV2K)")
        self.root = Path(root).expanduser()
        self.hr_dir = self.root / "DIV2K_train_HR"
        if not self.hr_dir.is_dir():
            raise FileNotFoundError(
                f"DIV2K training images not found: {self.hr_dir} (expected the published layout "
                "DIV2K/DIV2K_train_HR/0001.png ... and DIV2K/DIV2K_valid_HR/0801.png ...)")
        self.cache_dir = (Path(cache_dir).expanduser() if cache_dir
                          else self.root / f"DIV2K_train_HR_rescaled_s{size}")
        self.size, self.step, self.rescales = size, step, tuple(rescales)
        self.workers, self.progress = workers, progress
        self._entries: list[Rescaled] | None = None
        self._ends: list[int] = []
        self._grids: list[tuple[list[int], list[int]]] = []
        self._data: np.ndarray | None = None

    def prepare(self) -> None:
        prepare_rescaled(self.hr_dir, self.cache_dir, self.size, self.step, self.rescales, self.workers,
                         self.progress)

    def _index(self) -> list[Rescaled]:
        if self._entries is None:
            index_path = self.cache_dir / INDEX
            if not index_path.is_file():
                self.prepare()
            entries = [Rescaled(*e) for e in json.loads(index_path.read_text())["entries"]]
            self._grids = [(crop_positions(e.h, self.size, self.step), crop_positions(e.w, self.size, self.step))
                           for e in entries]
            self._ends = [int(n) for n in np.cumsum([len(tops) * len(lefts) for tops, lefts in self._grids])]
            self._entries = entries
        return self._entries

    def __getstate__(self) -> dict:
        """Worker processes open their own memory map."""
        return {**self.__dict__, "_data": None}

    def __len__(self) -> int:
        self._index()
        return self._ends[-1]

    def window(self, index: int) -> tuple[Rescaled, int, int]:
        """(rescaled image, top, left) of window ``index``."""
        entries = self._index()
        if not 0 <= index < self._ends[-1]:
            raise IndexError(f"window {index} out of range ({self._ends[-1]} windows)")
        k = bisect.bisect_right(self._ends, index)
        j = index - (self._ends[k - 1] if k else 0)
        tops, lefts = self._grids[k]
        return entries[k], tops[j // len(lefts)], lefts[j % len(lefts)]

    def load(self, index: int) -> torch.Tensor:
        return as_float(self.load_raw(index))

    def load_raw(self, index: int) -> torch.Tensor:
        entry, top, left = self.window(index)
        if self._data is None:  # one read-only map of the packed file per process
            self._data = np.memmap(self.cache_dir / PACKED, dtype=np.uint8, mode="r")
        img = self._data[entry.offset : entry.offset + entry.nbytes].reshape(entry.h, entry.w, 3)
        crop = np.array(img[top : top + self.size, left : left + self.size])
        return torch.from_numpy(crop).permute(2, 0, 1)

    def name(self, index: int) -> str:
        entry, top, left = self.window(index)
        return f"{entry.image}@x{entry.rescale:.2f}[{top}:{top + self.size},{left}:{left + self.size}]"

    def keep_at_least(self, size: int) -> None:
        """Also, before a cache exists, that some training image holds a sub-image (headers only)."""
        if size > self.size:
            raise ValueError(f"DIV2K sub-images are {self.size}x{self.size}, smaller than a {size}x{size} crop")
        if self._entries is None and not (self.cache_dir / INDEX).is_file():
            files = list_images(self.hr_dir)
            if not files:
                raise FileNotFoundError(f"no images in {self.hr_dir}")
            entries, skipped = plan_cache(files, self.size, self.rescales)
            if not entries:
                raise ValueError(f"no image in {self.hr_dir} is at least {self.size}x{self.size}"
                                 + (f" (unreadable: {'; '.join(skipped)})" if skipped else ""))

    def count_if_known(self) -> int | None:
        return len(self) if self._entries is not None or (self.cache_dir / INDEX).is_file() else None


def div2k_valid(root: str | Path, limit: int | None = None):
    """Validation images: ``root/DIV2K_valid_HR`` (0801-0900)."""

    folder = Path(root).expanduser() / "DIV2K_valid_HR"
    if not folder.is_dir():
        raise FileNotFoundError(f"DIV2K validation images not found: {folder}")
    return ImageFolder(folder, limit=limit)
