"""The k values at which a PCSR model sends given shares of pixels to its heavy upsamplers, on given images.

A model's heavy share falls with k, but where it falls depends on the model: a well-trained classifier
spreads it over a few units of k, a short training may route all or nothing between k = 0 and 1. To show
routing as it is (``pcsr demo``'s picture), k is searched per model: the classifier runs once per image
(``routed.prepare``) and only the cheap routing step is repeated, in a bisection on the pooled heavy
share of all the images (it does not rise with k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pcsr_lightning.inference.routed import Prepared, prepare, route
from pcsr_lightning.inference.router import heavy_mask

DEFAULT_TARGETS = (0.75, 0.5, 0.25)  # heavy shares to show: spread between all-heavy and all-light
K_RANGE = (-20.0, 20.0)  # cost multipliers cost_j^-k underflow to the limits well inside this
STEPS = 20  # bisection steps: the interval shrinks to 40 / 2^20, below the 4 decimals k is shown with


@dataclass(frozen=True)
class KChoice:
    """A k and the heavy share it gives on the images searched (``target``: the share asked for)."""

    target: float
    k: float
    heavy_share: float


def prepare_all(model, lrs: Sequence[torch.Tensor], scale: float) -> list[Prepared]:
    """Features and class probabilities of each (1,3,h,w) LR image, once for every k."""
    with torch.no_grad():
        return [prepare(model, lr, scale) for lr in lrs]


def pooled_heavy_share(model, prepared: Sequence[Prepared], k: float) -> float:
    """Heavy pixels over all pixels of all the images, routed at ``k``."""
    heavy = total = 0
    with torch.no_grad():
        for p in prepared:
            classes = route(model, p, k)
            heavy += int(heavy_mask(classes, model.num_classes).sum())
            total += classes.numel()
    return heavy / total


def _short(model, prepared: Sequence[Prepared], k: float, share: float, tolerance: float = 0.02) -> tuple[float, float]:
    """``k`` with the fewest decimals (up to 4) whose share stays within ``tolerance`` of ``share``."""
    for digits in range(5):
        rounded = round(k, digits) + 0.0  # no -0
        got = pooled_heavy_share(model, prepared, rounded)
        if abs(got - share) <= tolerance or digits == 4:
            return rounded, got
    raise AssertionError("unreachable")


def ks_for_shares(model, prepared: Sequence[Prepared], targets: Sequence[float] = DEFAULT_TARGETS) -> list[KChoice]:
    """For each target heavy share, the k whose pooled share is nearest it (bisection in ``K_RANGE``).
    A model whose share jumps past a target (many pixels with the same probabilities) gets the k on
    the side nearer the target; its ``heavy_share`` says what was reached."""
    if model.num_classes < 2:
        raise ValueError("a PCSR model with one upsampler routes nothing: every pixel is heavy")
    for target in targets:
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"a target heavy share is between 0 and 1, got {target}")
    ends = [pooled_heavy_share(model, prepared, k) for k in K_RANGE]
    choices = []
    for target in targets:
        (low, high), (share_low, share_high) = K_RANGE, ends  # share(low) >= target >= share(high) if reachable
        for _ in range(STEPS):
            mid = (low + high) / 2
            share = pooled_heavy_share(model, prepared, mid)
            if share >= target:
                low, share_low = mid, share
            else:
                high, share_high = mid, share
        k, share = (low, share_low) if abs(share_low - target) <= abs(share_high - target) else (high, share_high)
        k, share = _short(model, prepared, k, share)
        choices.append(KChoice(target, k, share))
    return choices
