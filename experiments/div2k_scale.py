"""What preparing and serving DIV2K costs, measured on a generated DIV2K-shaped folder.

``python experiments/div2k_scale.py --root /tmp/div2k_like --images 4`` writes 2040-pixel-wide
PNGs (tiles of scikit-image's sample photos, so the bicubic rescales work on real texture) in the
published layout, prepares the training cache and prints, per image: disk bytes, preparation seconds,
and training crops per second of one loader worker; then the same figures for DIV2K's 800 images.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pcsr_lightning.bench.inputs import photo_mosaic
from pcsr_lightning.bench.timing import machine_info
from pcsr_lightning.data.datamodule import TrainCrops
from pcsr_lightning.data.div2k import DIV2K, crop_positions
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import write_png

HEIGHTS = (1356, 1536, 1152, 1356)  # DIV2K's training images are 2040 wide, mostly 1356 high
WIDTH = 2040
DIV2K_TRAIN = 800
SUB_BYTES = 128 * 128 * 3  # one stored 128x128 sub-image (the former cache format)


def make_div2k_like(root: Path, images: int) -> list[Path]:
    """``root/DIV2K_train_HR/0001.png ...`` and one validation image, photo-like, 2040 wide."""
    train = root / "DIV2K_train_HR"
    train.mkdir(parents=True, exist_ok=True)
    (root / "DIV2K_valid_HR").mkdir(exist_ok=True)
    paths = []
    for i in range(images):
        path = train / f"{i + 1:04d}.png"
        if not path.is_file():
            mosaic = photo_mosaic((HEIGHTS[i % len(HEIGHTS)], WIDTH))
            write_png(torch.roll(mosaic, shifts=(61 * i, 97 * i), dims=(1, 2)), path)
        paths.append(path)
    valid = root / "DIV2K_valid_HR" / "0801.png"
    if not valid.is_file():
        write_png(photo_mosaic((256, 256)), valid)
    return paths


def disk_bytes(folder: Path) -> int:
    """Blocks actually allocated under ``folder`` (what ``du`` reports)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def crops_per_second(source: DIV2K, queries: int | None, batches: int, batch_size: int = 16,
                     workers: int = 1) -> float:
    """Training crops per second served by a DataLoader with ``workers`` processes (0: this process)."""
    crops = TrainCrops(source, queries=queries)
    loader = DataLoader(crops, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up and the first batch are not the steady state
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def measure_div2k(root: Path, images: int, workers: int | None, batches: int, queries: int | None) -> dict:
    make_div2k_like(root, images)
    machine = machine_info(torch.device("cpu"))
    source = DIV2K(root, workers=workers, progress=True)
    if source.cache_dir.exists():
        raise ValueError(f"{source.cache_dir} exists: remove it so preparation is timed from scratch")
    start = time.perf_counter()
    source.prepare()
    prep_s = time.perf_counter() - start
    index = json.loads((source.cache_dir / "index.json").read_text())
    old_bytes = sum(len(crop_positions(h, 128, 64)) * len(crop_positions(w, 128, 64)) * SUB_BYTES
                    for _, _, h, w, _ in index["entries"])
    torch.set_num_threads(1)  # as in a loader worker
    per_worker = crops_per_second(source, queries, batches, workers=1)
    in_process = crops_per_second(source, queries, batches, workers=0)
    prep_workers = workers or os.cpu_count() or 1
    result = {
        "images": images, "windows": len(source), "prep_workers": prep_workers,
        "disk_bytes_per_image": disk_bytes(source.cache_dir) / images,
        "old_format_bytes_per_image": old_bytes / images,
        "prep_seconds_per_image": prep_s / images,
        "crops_per_second_one_worker": per_worker, "crops_per_second_in_process": in_process,
        "queries": queries, "machine": machine,
    }
    result["div2k_800"] = {
        "disk_gb": result["disk_bytes_per_image"] * DIV2K_TRAIN / 1e9,
        "old_format_gb": result["old_format_bytes_per_image"] * DIV2K_TRAIN / 1e9,
        "prep_minutes": result["prep_seconds_per_image"] * DIV2K_TRAIN / 60,
        "crops_per_second_8_workers": 8 * per_worker,
    }
    return result


def report(r: dict) -> str:
    d = r["div2k_800"]
    return "\n".join([
        f"{r['images']} generated 2040-wide images, {r['windows']} training windows; {r['machine']}",
        f"disk per image: {r['disk_bytes_per_image'] / 1e6:.1f} MB "
        f"(storing the overlapping sub-images: {r['old_format_bytes_per_image'] / 1e6:.1f} MB)",
        f"preparation: {r['prep_seconds_per_image']:.2f} s per image with {r['prep_workers']} worker processes",
        f"loader: {r['crops_per_second_one_worker']:.0f} crops/s from one worker process "
        f"({r['crops_per_second_in_process']:.0f} in-process), queries={r['queries'] or 'all 16,384'}",
        f"DIV2K, 800 images: {d['disk_gb']:.1f} GB on disk (was {d['old_format_gb']:.1f} GB), "
        f"preparation {d['prep_minutes']:.0f} min with {r['prep_workers']} workers, "
        f"{d['crops_per_second_8_workers']:.0f} crops/s with 8 loader workers",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder to create the DIV2K-shaped data in")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None, help="preparation processes (default: every CPU)")
    parser.add_argument("--batches", type=int, default=40, help="batches of 16 crops timed per loader setting")
    parser.add_argument("--queries", type=int, default=None, help="query pixels per crop (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.images < 1:
        raise SystemExit("--images must be >= 1")
    result = measure_div2k(args.root, args.images, args.workers, args.batches, args.queries)
    print(report(result))
    if args.json:


        write_text(json.dumps(result, indent=1), args.json)


if __name__ == "__main__":
    main()
