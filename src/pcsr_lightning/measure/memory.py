"""Two different memory figures, named apart.

``call_peak_mb``: the extra memory one call needs at its peak (the bench's "peak MiB" per variant).
``process_peak_mb``: the most this process has held so far (what ``pcsr upscale`` reports after an image).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import torch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def call_peak_mb(fn: Callable[[], object], device: torch.device, interval_s: float = 0.002) -> float:
    """Extra MiB one call of ``fn`` needs: CUDA max allocated minus before, or sampled peak RSS minus before on CPU.

    ru_maxrss cannot do this on CPU (it is a process-lifetime maximum), so a thread samples RSS.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
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


def process_peak_mb(device: torch.device) -> float:
    """The most this process has held so far, in MiB: CUDA max allocated on a GPU, peak RSS (ru_maxrss) on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource  # Unix only: importing it at the top would break the package on Windows

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
