"""The router: which upsampler each HR pixel goes to.

Classes are ordered by cost, U_0 the heaviest. Ties go to the cheaper upsampler, as in the release
(whose index 0 is its light class). ``cost_list`` gives the per-class costs the cost knob k weighs.
"""

from __future__ import annotations

import math

import torch

from pcsr_lightning.measure.flops import paper_flops
from pcsr_lightning.models.sampler import output_size


def cost_list(model, scale: float) -> torch.Tensor:
    """cost_j = FLOPs(B) + FLOPs(U_j) at a 16x16 LR input, normalised to sum 1 (paper convention).

    Depends on the architecture only, so it is kept per scale in the model's ``cost_cache``.
    """
    key = float(scale)
    if key not in model.cost_cache:
        model.cost_cache[key] = _cost_list(model, key)
    return model.cost_cache[key]


def _cost_list(model, scale: float) -> torch.Tensor:
    """Counted on zeros of the backbone's own device and dtype, so a model cast to float16 or bfloat16
    still gets its costs (the counts do not depend on the dtype)."""
    weight = next(model.backbone.parameters())
    queries = output_size((16, 16), scale)
    backbone = paper_flops(model.backbone, weight.new_zeros(1, 3, 16, 16))
    costs = torch.tensor(
        [backbone + 2 * queries[0] * queries[1] * u.macs_per_query() for u in model.upsamplers],
        dtype=torch.float64,
    )
    return (costs / costs.sum()).float()


def class_counts(classes: torch.Tensor, num_classes: int) -> list[int]:
    """Pixels per upsampler (index 0 = heaviest) of one image's class map."""
    return torch.bincount(classes.flatten().cpu(), minlength=num_classes).tolist()


def heavy_mask(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The one definition of a heavy pixel, for every M: on the first half of the upsamplers (U_0 for
    M = 2 and 3, U_0 and U_1 for M = 4). Refinement smooths light pixels next to these; heavy shares
    count them."""
    return classes < max(1, num_classes // 2)


def heavy_share(classes: torch.Tensor | None, num_classes: int) -> float | None:
    """Share of heavy pixels (``heavy_mask``) in a class map; None for an original network."""
    return None if classes is None else int(heavy_mask(classes, num_classes).sum()) / classes.numel()


def skipped_share(classes: torch.Tensor, num_classes: int) -> float:
    """Share of pixels the flat-tile gate skipped (class ``num_classes``) in a class map."""
    return int((classes == num_classes).sum()) / classes.numel()


def decide_classes(probs: torch.Tensor, costs: torch.Tensor, k: float, adaptive: bool) -> torch.Tensor:
    """Per image: (B,Q,M) probabilities -> (B,Q) classes."""
    if adaptive:
        return torch.stack([route_adaptive(p) for p in probs])
    return route_by_cost(probs, costs.to(probs.device), k)


def check_k(k: float) -> float:
    """k must be a finite number: nan compares false with everything and inf leaves no ordering."""
    try:
        value = float(k)
    except (TypeError, ValueError):
        raise ValueError(f"the cost knob k must be a finite number, got {k}") from None
    if isinstance(k, bool) or not math.isfinite(value):
        raise ValueError(f"the cost knob k must be a finite number, got {value:g}")
    return value


def cost_multipliers(costs: torch.Tensor, k: float) -> torch.Tensor:
    """cost_j^-k divided by its largest value, computed in log space (float64): in (0, 1], the largest is
    exactly 1. Scaling every score by one positive number leaves the argmax unchanged, and no value
    overflows; with extreme k the unlikely classes' multipliers underflow to 0, which is the limit
    (k = -1000 sends every pixel with p_heavy > 0 to the heavy class)."""
    log_w = -check_k(k) * torch.log(costs.double())
    return torch.exp(log_w - log_w.max())


def route_by_cost(
    probs: torch.Tensor, costs: torch.Tensor, k: float, dim: int = -1, out: torch.Tensor | None = None
) -> torch.Tensor:
    """argmax_j p_j / cost_j^k over the class dim ``dim``; k = 0 is a plain argmax, larger k favours light.
    ``out``: an int64 tensor of the result's shape to write into."""
    weights = cost_multipliers(costs, k).to(probs)
    m = probs.shape[dim]
    # A running max over the classes, lightest first, replaced only on a strict improvement: ties stay
    # with the cheaper class. Cheaper than argmax, which is slow over a short strided dim.
    best = probs.select(dim, m - 1) * weights[m - 1]
    classes = torch.empty_like(best, dtype=torch.long) if out is None else out
    classes.fill_(m - 1)
    for j in range(m - 2, -1, -1):
        score = probs.select(dim, j) * weights[j]
        better = score > best
        classes.masked_fill_(better, j)
        if j:
            best = torch.where(better, score, best)
    return classes


def difficulty(probs: torch.Tensor) -> torch.Tensor:
    """Expected heaviness in [0, 1]: p of the heavy class for M = 2."""
    m = probs.shape[-1]
    if m == 1:
        return torch.ones_like(probs[..., 0])
    weights = torch.arange(m - 1, -1, -1, device=probs.device, dtype=probs.dtype) / (m - 1)
    return (probs * weights).sum(-1)


def kmeans_1d(x: torch.Tensor, clusters: int, iters: int = 20, tol: float = 1e-4) -> torch.Tensor:
    """The release's 1-D k-means on values in [0, 1]; returns each value's cluster index (unordered).

    Kept step for step because its early stop and odd start decide the split (heavy shares move by
    several points against a k-means run to convergence). For two clusters both centroids start at
    0.5, so the first assignment puts every value in cluster 0 and the first update gives
    (mean, 0). Each iteration assigns every value to its nearest centroid (ties to the lower index),
    then moves each centroid to its cluster's mean (0 for an empty cluster); it stops once the summed
    squared centroid shift is <= ``tol`` or after ``iters`` iterations, the first one included. The
    labels are those of the last assignment, made with the centroids from before its update. The
    release has two clusters only; for more (where a single start would leave all but two empty) the
    centroids start evenly spaced and the same iteration and stop apply.
    """
    if clusters < 1:
        raise ValueError(f"k-means needs at least one cluster, got {clusters}")
    if clusters == 2:
        centroids = torch.full((2,), 0.5, dtype=torch.float64, device=x.device)
    else:
        centroids = (torch.arange(clusters, dtype=torch.float64, device=x.device) + 0.5) / clusters
    labels = torch.zeros_like(x, dtype=torch.long)
    for _ in range(iters):
        # Nearest centroid by a running minimum (one temporary per cluster, not an N x M matrix);
        # only a strict improvement moves a value, so ties stay with the lower index.
        labels.zero_()
        best = (x - centroids[0]).abs()
        for j in range(1, clusters):
            dist = (x - centroids[j]).abs()
            closer = dist < best
            labels.masked_fill_(closer, j)
            best = torch.where(closer, dist, best)
        sums = torch.zeros_like(centroids).scatter_add_(0, labels, x.to(centroids.dtype))
        counts = torch.bincount(labels, minlength=clusters).to(centroids.dtype)
        moved = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros_like(centroids))
        shift = float(((moved - centroids) ** 2).sum())
        centroids = moved
        if shift <= tol:
            break
    return labels


def route_adaptive(probs: torch.Tensor) -> torch.Tensor:
    """ADM: cluster the min-max normalised difficulty of one image into M groups (``kmeans_1d``).

    The cluster holding the easiest pixel takes the lightest upsampler; for M > 2 the others follow
    in the order of their easiest pixels (1-D clusters are intervals). A flat image (max == min)
    sends every pixel to the lightest one.
    """
    m = probs.shape[-1]
    d = difficulty(probs).reshape(-1)
    lo, hi = d.min(), d.max()
    if m == 1 or not hi > lo:
        return torch.full(probs.shape[:-1], m - 1, dtype=torch.long, device=probs.device)
    labels = kmeans_1d((d - lo) / (hi - lo), m)
    # Rank the clusters by their easiest value: rank 0 (the easiest pixel's cluster) is the lightest class.
    easiest = torch.full((m,), float("inf"), dtype=d.dtype, device=d.device).scatter_reduce_(
        0, labels, d, reduce="amin")
    rank = torch.empty(m, dtype=torch.long, device=d.device)
    rank[torch.argsort(easiest, stable=True)] = torch.arange(m, device=d.device)
    return ((m - 1) - rank[labels]).view(probs.shape[:-1])
