"""The CPU cache the routed path sizes its blocks to, read from the machine it runs on.

Render blocks and refinement bands are sized so that one block's activations fit the L2 caches of the
cores that work on it (one per intra-op thread): past that, BLAS on CARN's 74-wide layers runs at about
half speed. The L2 size per core comes from the OS (Linux sysfs, else ``sysconf``), with
a conservative fallback where neither says.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
FALLBACK_L2_BYTES = 512 * 1024  # the smallest L2 per core of recent x86 server cores


def parse_bytes(text: str) -> int:
    """sysfs cache sizes: '1024K', '2M', '512' (bytes) -> bytes."""
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def read_l2_bytes(sysfs: Path = SYSFS_CACHE) -> int | None:
    """L2 bytes of one core as the OS reports it, or None where it does not."""
    try:
        for index in sorted(sysfs.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            if level == "2" and kind in ("Unified", "Data"):
                return parse_bytes((index / "size").read_text()) or None
    except (OSError, ValueError):
        pass
    name = "SC_LEVEL2_CACHE_SIZE"
    if name in getattr(os, "sysconf_names", {}):
        try:
            size = os.sysconf(name)
        except (OSError, ValueError):
            size = 0
        if size > 0:
            return size
    return None


@functools.lru_cache(maxsize=1)
def l2_bytes_per_core() -> int:
    """This machine's L2 per core (read once per process: hardware does not change under it)."""
    return read_l2_bytes() or FALLBACK_L2_BYTES


def cpu_cache_budget(threads: int | None = None) -> int:
    """Bytes of activations a block may hold: the L2 of every core an intra-op thread runs on."""
    return l2_bytes_per_core() * max(1, threads or torch.get_num_threads())
