"""Helpers shared by the backbones' upsampling tails."""

from __future__ import annotations


def integer_scale(scale: float | int | None, network: str, allowed: tuple[int, ...]) -> int:
    """Original networks have fixed pixel-shuffle/deconv tails: only some integer scales exist."""
    if scale is None or float(scale) != int(scale) or int(scale) not in allowed:
        raise ValueError(
            f"{network} original network supports scales {list(allowed)}, got {scale!r}; "
            "use a PCSR model for arbitrary scales"
        )
    return int(scale)
