"""The router: which upsampler each HR pixel goes to.

Classes are ordered by cost, U_0 the heaviest. Ties go to the cheaper upsampler, as in the release
(whose index 0 is its light class). ``cost_list`` gives the per-class costs the cost knob k weighs.
"""

from __future__ import annotations

import math

import torch

from pcsr_lightning.models.sampler import output_size


def cost_list(model, scale: float) -> torch.Tensor:
    """cost_j = FLOPs(B) + FLOPs(U_j) at a 16x16 LR input, normalised to sum 1 (paper convention).

    Depends on the architecture only; ``PCSR.cost_list`` caches it per scale.
    """
    from pcsr_lightning.measure.flops import paper_flops

    device = model.rgb_mean.device
    queries = output_size((16, 16), scale)
    backbone = paper_flops(model.backbone, torch.zeros(1, 3, 16, 16, device=device))
    costs = torch.tensor(
        [backbone + 2 * queries[0] * queries[1] * u.macs_per_query() for u in model.upsamplers],
        dtype=torch.float64,
    )
    return (costs / costs.sum()).float()


def decide_classes(probs: torch.Tensor, costs: torch.Tensor, k: float, adaptive: bool) -> torch.Tensor:
    """Per image: (B,Q,M) probabilities -> (B,Q) classes."""
    if adaptive:
        return torch.stack([route_adaptive(p) for p in probs])
    return route_by_cost(probs, costs.to(probs.device), k)


def check_k(k: float) -> float:
    """k must be a finite number: nan compares false with everything and inf leaves no ordering."""
    k = float(k)
    if not math.isfinite(k):
        raise ValueError(f"the cost knob k must be a finite number, got {k}")
    return k


def cost_multipliers(costs: torch.Tensor, k: float) -> torch.Tensor:
    """cost_j^-k divided by its largest value, computed in log space (float64): in (0, 1], the largest is
    exactly 1. Scaling every score by one positive number leaves the argmax unchanged, and no value
    overflows; with extreme k the unlikely classes' multipliers underflow to 0, which is the limit
    (k = -1000 sends every pixel with p_heavy > 0 to the heavy class)."""
    log_w = -check_k(k) * torch.log(costs.double())
    return torch.exp(log_w - log_w.max())


def route_by_cost(probs: torch.Tensor, costs: torch.Tensor, k: float, dim: int = -1) -> torch.Tensor:
    """argmax_j p_j / cost_j^k over the class dim ``dim``; k = 0 is a plain argmax, larger k favours light."""
    weights = cost_multipliers(costs, k).to(probs)
    m = probs.shape[dim]
    # A running max over the classes, lightest first, replaced only on a strict improvement: ties stay
    # with the cheaper class. Cheaper than argmax, which is slow over a short strided dim.
    best = probs.select(dim, m - 1) * weights[m - 1]
    classes = torch.full_like(best, m - 1, dtype=torch.long)
    for j in range(m - 2, -1, -1):
        score = probs.select(dim, j) * weights[j]
        better = score > best
        classes.masked_fill_(better, j)
        best = torch.where(better, score, best)
    return classes


def difficulty(probs: torch.Tensor) -> torch.Tensor:
    """Expected heaviness in [0, 1]: p of the heavy class for M = 2."""
    m = probs.shape[-1]
    if m == 1:
        return torch.ones_like(probs[..., 0])
    weights = torch.arange(m - 1, -1, -1, device=probs.device, dtype=probs.dtype) / (m - 1)
    return (probs * weights).sum(-1)


def kmeans_1d(x: torch.Tensor, clusters: int, iters: int = 50) -> torch.Tensor:
    """Lloyd's k-means on values in [0, 1]; labels are ordered by centroid (0 = lowest)."""
    centroids = (torch.arange(clusters, device=x.device, dtype=x.dtype) + 0.5) / clusters
    labels = torch.zeros_like(x, dtype=torch.long)
    for step in range(iters):
        # In 1-D with sorted centroids the nearest one is found by the midpoints between them.
        new = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
        if step and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(centroids).scatter_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=clusters).to(x.dtype)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        centroids, _ = torch.sort(centroids)
    return labels


def route_adaptive(probs: torch.Tensor) -> torch.Tensor:
    """ADM: cluster the min-max normalised difficulty of one image into M groups.

    The cluster holding the easiest pixel takes the lightest upsampler. A flat image (max == min)
    sends every pixel to the lightest one.
    """
    m = probs.shape[-1]
    d = difficulty(probs).reshape(-1)
    lo, hi = d.min(), d.max()
    if m == 1 or not hi > lo:
        return torch.full(probs.shape[:-1], m - 1, dtype=torch.long, device=probs.device)
    labels = kmeans_1d((d - lo) / (hi - lo), m)
    return ((m - 1) - labels).view(probs.shape[:-1])
