"""The router: which upsampler each HR pixel goes to, and the refinement that hides the seams.

Classes are ordered by cost, U_0 the heaviest. Ties go to the cheaper upsampler, as in the release
(whose index 0 is its light class).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def route_by_cost(probs: torch.Tensor, costs: torch.Tensor, k: float, dim: int = -1) -> torch.Tensor:
    """argmax_j p_j / cost_j^k over the class dim ``dim``; k = 0 is a plain argmax, larger k favours light."""
    weights = torch.pow(costs.to(probs), k)
    m = probs.shape[dim]
    # A running max over the classes, lightest first, replaced only on a strict improvement: ties stay
    # with the cheaper class. Cheaper than argmax, which is slow over a short strided dim.
    best = probs.select(dim, m - 1) / weights[m - 1]
    classes = torch.full_like(best, m - 1, dtype=torch.long)
    for j in range(m - 2, -1, -1):
        score = probs.select(dim, j) / weights[j]
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


def heavy_mask(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Heavy = the first half of the upsamplers (U_0 for M = 2)."""
    return classes < max(1, num_classes // 2)


def refinement_mask(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,H,W) light pixels with a heavy pixel in their 3x3 neighbourhood, outer border excluded."""
    heavy = heavy_mask(classes, num_classes)
    # 3x3 dilation as two 1-D passes of shifted ORs on bools (the border is cleared below anyway).
    rows = heavy.clone()
    rows[:, :, 1:] |= heavy[:, :, :-1]
    rows[:, :, :-1] |= heavy[:, :, 1:]
    near_heavy = rows.clone()
    near_heavy[:, 1:] |= rows[:, :-1]
    near_heavy[:, :-1] |= rows[:, 1:]
    cond = ~heavy & near_heavy
    cond[:, [0, -1], :] = False
    cond[:, :, [0, -1]] = False
    return cond


def refine(pred: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Replace the masked pixels of pred (B,3,H,W) by their 3x3 mean (replicate padding)."""
    cond = refinement_mask(classes, num_classes)
    if not bool(cond.any()):
        return pred
    mean = F.avg_pool2d(F.pad(pred, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return torch.where(cond[:, None], mean, pred)


REFINE_BAND_ROWS = 32  # measured on 2 CPU cores: 32-64 rows fastest at 2K and 4K (4-row bands are 1.6-2x slower)


def refine_in_place(
    pred: torch.Tensor, classes: torch.Tensor, num_classes: int, band: int = REFINE_BAND_ROWS
) -> None:
    """``refine`` in place, a band of rows at a time: separable 3x3 sums of a band that stays in cache,
    written where the mask says. No image-sized temporaries (the 9-gather form cost over a second at 4K).

    The mask never touches the outer border, so only interior pixels change and no padding is needed;
    the band's upper neighbour row is kept as it was before the previous band was written.
    """
    cond = refinement_mask(classes, num_classes)
    b, c, h, w = pred.shape
    if h < 3 or w < 3:
        return
    for i in range(b):
        img, mask = pred[i], cond[i]
        if not bool(mask.any()):  # all one class (all-light, all-heavy): nothing to smooth
            continue
        above = img[:, 0].clone()
        for r0 in range(1, h - 1, band):
            r1 = min(h - 1, r0 + band)
            rows = img[:, r0 : r1 + 1]
            vertical = rows[:, :-1] + rows[:, 1:]  # rows r0 .. r1-1: itself + the row below
            vertical[:, 1:] += rows[:, :-2]  # + the row above
            vertical[:, 0] += above
            box = vertical[:, :, :-2] + vertical[:, :, 1:-1]
            box += vertical[:, :, 2:]
            above = img[:, r1 - 1].clone()
            target = img[:, r0:r1, 1 : w - 1]
            target.copy_(torch.where(mask[r0:r1, 1 : w - 1], box.div_(9), target))
