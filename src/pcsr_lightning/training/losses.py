"""The two training losses of PCSR. Their weights are set per stage in conf/model/."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, target)


def weighted_l1_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L1 averaged with a weight per pixel: sum_i w_i |pred_i - target_i| / (3 sum_i w_i).

    ``pred`` and ``target`` are (..., 3), ``weight`` is (...) and carries no gradient.
    """
    weight = weight.detach().unsqueeze(-1)
    return (weight * (pred - target).abs()).sum() / (weight.sum() * pred.shape[-1]).clamp_min(1e-12)


def average_loss(probs: torch.Tensor) -> torch.Tensor:
    """Load balance over the whole batch: (1/M) sum_j |sum_i p_ij - N/M| / (N/M).

    ``probs`` is (..., M); N is the number of pixels over all leading dimensions (batch x queries).
    """
    p = probs.reshape(-1, probs.shape[-1])
    n, m = p.shape
    target = n / m
    return ((p.sum(0) - target).abs() / target).mean()


def classifier_stage_loss(pred: torch.Tensor, target: torch.Tensor, probs: torch.Tensor, l1_weight: float,
                          average_weight: float) -> dict[str, torch.Tensor]:
    """``l1_weight * L1 + average_weight * L_avg`` (the paper: 1000 and 3), with both parts for logging."""
    l1, avg = l1_loss(pred, target), average_loss(probs)
    return {"loss": l1_weight * l1 + average_weight * avg, "l1": l1, "average": avg}


def routing_loss(score: torch.Tensor, gain: torch.Tensor, heavy_share: float) -> torch.Tensor:
    """Cost-sensitive logistic loss of the heavy-or-light decision routing makes with the classifier.

    ``score`` is log(p_0 / p_1) per pixel, ``gain`` what sending the pixel to U_0 instead of U_1 saves
    (no gradient). The pixels whose gain is in the batch's top ``heavy_share`` are labelled heavy, and
    each pixel weighs |gain - threshold|: what the wrong decision at that threshold would cost.
    """
    g = gain.detach().flatten()
    kept = max(1, min(g.numel(), round((1.0 - heavy_share) * g.numel())))
    threshold = g.kthvalue(kept).values
    weight = (g - threshold).abs()
    label = (g > threshold).to(score.dtype)
    loss = F.binary_cross_entropy_with_logits(score.flatten(), label, reduction="none")
    return (weight * loss).sum() / weight.sum().clamp_min(1e-12)
