"""Wall-clock benchmark of routed PCSR against the network it accelerates, side by side in one run.

Small pure pieces (input, timing, memory, table) so ``pcsr bench`` stays a thin command and tests can
check each. Timings are medians of synchronized repeats after a warm-up.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
TILE = 256


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--hr-size must look like 2160x3840 (HxW), got {text!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"--hr-size must be positive, got {text!r}")
    return h, w


def photo_mosaic(hr_size: tuple[int, int]) -> torch.Tensor:
    """(3,H,W) in [0,1]: native-resolution 256x256 crops of scikit-image's sample photos, tiled.

    Real texture at its own scale keeps the routing realistic (an upscaled photo would be mostly smooth).
    """
    import numpy as np
    import skimage.data

    photos = []
    for name in PHOTOS:
        arr = getattr(skimage.data, name)()
        photos.append(torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1).float() / 255)
    h, w = hr_size
    out = torch.empty(3, h, w)
    for ty, y0 in enumerate(range(0, h, TILE)):
        for tx, x0 in enumerate(range(0, w, TILE)):
            photo = photos[(ty + 2 * tx) % len(photos)]
            ph, pw = photo.shape[-2:]
            oy, ox = (37 * (ty + tx)) % (ph - TILE + 1), (53 * (ty + 3 * tx)) % (pw - TILE + 1)
            y1, x1 = min(h, y0 + TILE), min(w, x0 + TILE)
            out[:, y0:y1, x0:x1] = photo[:, oy : oy + y1 - y0, ox : ox + x1 - x0]
    return out


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rounds(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int | dict[str, int] = 3, warmup: int = 0
) -> dict[str, list[float]]:
    """Synchronized wall-clock milliseconds per variant, the variants interleaved round by round.

    On a shared machine the speed drifts by tens of percent over a minute; timing A A A then B B B puts
    that drift into the ratio, A B A B puts it into both sides alike. ``repeats`` may differ per variant
    (a slow reference path gets fewer); a variant drops out of the rounds once it has its repeats.
    """
    counts = {name: repeats for name in fns} if isinstance(repeats, int) else dict(repeats)
    if any(counts.get(name, 0) < 1 for name in fns):
        raise ValueError(f"repeats must be >= 1 for every variant (--repeats, --reference-repeats), got {counts}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(max(counts.values())):
        for name, fn in fns.items():
            if r < counts[name]:
                t0 = time.perf_counter()
                fn()
                synchronize(device)
                times[name].append(1000 * (time.perf_counter() - t0))
    return times


def paired_ratio(times: list[float], base: list[float]) -> float:
    """Median over rounds of time / baseline time in the same round (the drift-robust ratio)."""
    return statistics.median(t / b for t, b in zip(times, base))


MATRIX_PRODUCTS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")


def op_profile(fn: Callable[[], object], device: torch.device, top: int = 12) -> dict:
    """One call under torch.profiler: self time per operator (device time on CUDA), largest first.

    ``matmul_share`` is the part spent in matrix products: what is left once overheads are gone.
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    events = prof.key_averages()
    self_us = {e.key: (e.self_device_time_total if cuda else e.self_cpu_time_total) for e in events}
    calls = {e.key: e.count for e in events}
    total = sum(self_us.values())
    ops = sorted(self_us, key=self_us.get, reverse=True)[:top]
    return {
        "clock": "device" if cuda else "cpu",
        "total_ms": total / 1000,
        "matmul_share": sum(self_us.get(k, 0.0) for k in MATRIX_PRODUCTS) / max(total, 1e-9),
        "ops": [{"op": k, "self_ms": self_us[k] / 1000, "calls": calls[k], "share": self_us[k] / max(total, 1e-9)}
                for k in ops],
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mb(fn: Callable[[], object], device: torch.device, interval_s: float = 0.002) -> float:
    """Extra memory one call needs: CUDA max allocated minus before, or sampled peak RSS minus before on CPU.

    ru_maxrss cannot do this on CPU (it is a process-lifetime maximum), so a thread samples RSS.
    """
    if device.type == "cuda":
        synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return (max(peak[0], _rss_bytes()) - base) / 2**20


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "nproc": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class Row:
    """One measured variant."""

    name: str
    ms: float
    psnr: float
    heavy_share: float | None
    peak_mb: float
    times_ms: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def ratio_rows(rows: list[Row], baseline: str = "original") -> list[list[str]]:
    """Table cells: name, median ms, paired ratio to the baseline, PSNR, heavy share, peak memory."""
    base = next(r for r in rows if r.name == baseline)
    return [
        [
            r.name,
            f"{r.ms:.1f}",
            f"{paired_ratio(r.times_ms, base.times_ms):.3f}",
            f"{r.psnr:.3f}",
            "-" if r.heavy_share is None else f"{r.heavy_share:.3f}",
            f"{r.peak_mb:,.0f}",
        ]
        for r in rows
    ]


TABLE_HEADER = ["variant", "median ms", "x original", "PSNR dB", "heavy share", "peak MiB"]
