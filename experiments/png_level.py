"""How long writing the SR PNG takes, and how large it is, per zlib compression level.

``pcsr upscale`` writes one PNG per image; at Pillow's own default (level 6) that write is a large share
of the time PCSR takes to compute a 2K result. This measures, per photo, the write time (median of
``--rounds`` interleaved rounds, every level once per round) and the file size at each level, on centre
crops of a photo folder at the HR size: the trade-off behind ``io.images.PNG_COMPRESS_LEVEL``. Usage:
    python experiments/png_level.py PHOTOS [--hr-size 1080x1920] [--levels 0 1 2 3 6 9] [--rounds 3]
The pixels decoded back are checked equal at every level (PNG is lossless whatever the level).
"""

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pcsr_lightning.bench.inputs import parse_size
from pcsr_lightning.bench.timing import machine_info
from pcsr_lightning.io.images import list_images, read_image, to_uint8


def centre_crop(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    (h, w), (hh, ww) = img.shape[-2:], size
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    return img[:, y0 : y0 + hh, x0 : x0 + ww]


def encode(arr: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def measure(arr: np.ndarray, levels: list[int], rounds: int) -> tuple[dict[int, float], dict[int, int]]:
    """Median write ms and bytes per level for one (H,W,3) uint8 image, levels interleaved per round;
    raises if any level does not decode to the same pixels."""
    times: dict[int, list[float]] = {level: [] for level in levels}
    sizes: dict[int, int] = {}
    for _ in range(rounds):
        for level in levels:
            start = time.perf_counter()
            data = encode(arr, level)
            times[level].append(time.perf_counter() - start)
            sizes[level] = len(data)
            if not np.array_equal(np.asarray(Image.open(io.BytesIO(data))), arr):
                raise ValueError(f"level {level} did not decode to the same pixels")
    return {level: statistics.median(t) * 1000 for level, t in times.items()}, sizes


def table(rows: list[tuple[str, dict[int, float], dict[int, int]]], levels: list[int]) -> list[str]:
    """Markdown lines: per level the median over photos of the write ms, MB, and both against level 6
    (or the first level when 6 is not measured), each ratio taken photo by photo."""
    ref = 6 if 6 in levels else levels[0]
    lines = [f"| level | write ms | x level {ref} time | MB | x level {ref} size |", "| --- | --- | --- | --- | --- |"]
    for level in levels:
        ms = statistics.median(r[1][level] for r in rows)
        t_ratio = statistics.median(r[1][level] / r[1][ref] for r in rows)
        mb = statistics.median(r[2][level] for r in rows) / 1e6
        s_ratio = statistics.median(r[2][level] / r[2][ref] for r in rows)
        lines.append(f"| {level} | {ms:.0f} | {t_ratio:.3f} | {mb:.2f} | {s_ratio:.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos")
    parser.add_argument("--hr-size", default="1080x1920")
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2, 3, 6, 9])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    hh, ww = parse_size(args.hr_size)
    rows = []
    for path in list_images(Path(args.photos)):
        img = read_image(path)
        if img.shape[-2] < hh or img.shape[-1] < ww:
            continue
        arr = to_uint8(centre_crop(img, (hh, ww)))
        rows.append((path.stem, *measure(arr, args.levels, args.rounds)))
    if not rows:
        raise SystemExit(f"no photo in {args.photos} is at least {hh}x{ww}")
    print(f"{len(rows)} photos, {hh}x{ww} centre crops, Pillow {Image.__version__}, "
          f"{machine_info(torch.device('cpu'))['cpu']}; write ms: median of {args.rounds} rounds per photo, then "
          "the median over photos")
    print("\n".join(table(rows, args.levels)))


if __name__ == "__main__":
    main()
