"""Helpers shared by the networks: their upsampling tails and the checks of their sizes."""

from __future__ import annotations

import math
from numbers import Real


def integer_scale(scale: float | int | None, network: str, allowed: tuple[int, ...]) -> int:
    """Original networks have fixed pixel-shuffle/deconv tails: only some integer scales exist."""
    if scale is None or float(scale) != int(scale) or int(scale) not in allowed:
        raise ValueError(
            f"{network} original network supports scales {list(allowed)}, got {scale!r}; "
            "use a PCSR model for arbitrary scales"
        )
    return int(scale)


def count(value, name: str, minimum: int = 1) -> int:
    """A width or depth given to a network: an integer >= ``minimum``. Torch would build a zero-width
    layer silently, or fail on a negative one with a message naming no argument."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) \
            or float(value) != int(value) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
