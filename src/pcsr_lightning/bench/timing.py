"""Timing side by side: interleaved rounds, paired ratios, an operator profile, the machine's facts.

Timings are medians of synchronized repeats; ratios are medians of same-round ratios, so the drift of a
shared machine falls on both sides alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

Stage = Callable[[str, int], Callable[[], None]]  # progress of a stage: (label, calls) -> after each call


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_rounds(
    fns: dict[str, Callable[[], object]], device: torch.device, repeats: int | dict[str, int] = 3, warmup: int = 0,
    after_call: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Synchronized wall-clock milliseconds per variant, the variants interleaved round by round.

    On a shared machine the speed drifts by tens of percent over a minute; timing A A A then B B B puts
    that drift into the ratio, A B A B puts it into both sides alike. ``repeats`` may differ per variant
    (a slow reference path gets fewer); a variant drops out of the rounds once it has its repeats.
    ``after_call()`` after each timed call, outside its time.
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
                if after_call is not None:  # outside the timed span (progress)
                    after_call()
    return times


def paired_ratio(times: list[float], base: list[float]) -> float:
    """Median over rounds of time / baseline time in the same round (the drift-robust ratio)."""
    return statistics.median(t / b for t, b in zip(times, base))


MATRIX_PRODUCTS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "mkldnn::_linear_pointwise")


def op_profile(fn: Callable[[], object], device: torch.device, top: int = 12) -> dict:
    """One call under torch.profiler: self time per operator (device time on CUDA), largest first.

    ``matmul_share`` is the part spent in matrix products: what is left once overheads are gone.
    """
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


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on."""
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "nproc": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}  # the allocator's settings change the times
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
