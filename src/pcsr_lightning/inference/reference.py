"""The same routing written plainly, as the oracle the fast path is tested against.

- ``upscale_reference``: the release's chunked loop (per-chunk gathers and MLP calls); the baseline
  ``pcsr bench`` times the fast path against.
- ``class_map_agreement``: where the fast path's class map may differ from the loop's, and does.
- ``RoutedGraph``: routed inference as one plain forward on a fixed class map, so a tracing FLOPs
  counter can check the meter's per-part sum on small images.
"""

from __future__ import annotations

import torch
from torch import nn

from pcsr_lightning.inference.refinement import refine as refine_pixels
from pcsr_lightning.inference.routed import RoutedSR
from pcsr_lightning.inference.router import cost_list, decide_classes
from pcsr_lightning.models.sampler import make_cell, make_coord, output_size, query_inputs


@torch.no_grad()
def upscale_reference(
    model,
    lr: torch.Tensor,
    scale: float,
    k: float = 0.0,
    adaptive: bool = False,
    refine: bool = True,
    chunk: int = 65536,
    feat: torch.Tensor | None = None,
) -> RoutedSR:
    """The release's chunked loop: per chunk, gather inputs and call each MLP on its own pixels.

    ``feat`` may be given (as for ``upscale``) to time the routed part alone."""
    lr_norm = model.normalize(lr)
    if feat is None:
        feat = model.encode(lr_norm)
    b, _, h, w = lr.shape
    hh, ww = output_size((h, w), scale)
    q = hh * ww
    coord = make_coord((hh, ww), lr.device)[None]
    cell = make_cell((hh, ww), q, lr.device)[None]
    m = model.num_classes
    probs = lr.new_empty(b, q, m)
    for q0 in range(0, q, chunk):
        probs[:, q0 : q0 + chunk] = model.class_probabilities(
            query_inputs(feat, coord[:, q0 : q0 + chunk].expand(b, -1, -1), cell[:, q0 : q0 + chunk].expand(b, -1, -1))
        )
    if m > 1:
        classes = decide_classes(probs, cost_list(model, scale), k, adaptive)
    else:
        classes = torch.zeros(b, q, dtype=torch.long, device=lr.device)
    pred = lr.new_zeros(b, q, 3)
    for i in range(b):
        for q0 in range(0, q, chunk):
            q1 = min(q, q0 + chunk)
            flags = classes[i, q0:q1]
            for j, upsampler in enumerate(model.upsamplers):
                idx = torch.where(flags == j)[0]
                if len(idx):
                    inputs = query_inputs(feat[i : i + 1], coord[:, q0:q1][:, idx], cell[:, q0:q1][:, idx])
                    pred[i, q0 + idx] = upsampler(inputs)[0]
            pred[i, q0:q1] += model.bilinear_base(lr_norm[i : i + 1], coord[:, q0:q1])[0]
    pred = pred.transpose(1, 2).reshape(b, 3, hh, ww)
    class_map = classes.view(b, hh, ww)
    if refine:
        pred = refine_pixels(pred, class_map, m)
    return RoutedSR(pred + model.rgb_mean, class_map, model.num_classes)


# Folding the first Linear sums the same products in another order than the loop's Linear on gathered
# inputs (and channels_last vs NCHW features give the BLAS calls other strides), so the probabilities of
# the two paths differ by a few float32 roundings (~1e-7). Only a pixel whose two best cost-weighted
# scores are closer than that can change class; NEAR_TIE_RTOL is that closeness with a 100x margin.
NEAR_TIE_RTOL = 1e-5


def near_ties(probs: torch.Tensor, costs: torch.Tensor, k: float, rtol: float = NEAR_TIE_RTOL) -> torch.Tensor:
    """(..., M) probabilities -> (...) bool: the two best scores p_j / cost_j^k within ``rtol`` of each other."""
    if probs.shape[-1] < 2:
        return torch.zeros(probs.shape[:-1], dtype=torch.bool, device=probs.device)
    scores = probs.double() / costs.to(probs.device).double() ** k
    top = scores.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1] <= rtol * top[..., 0]


def class_map_agreement(
    fast: torch.Tensor, reference: torch.Tensor, probs: torch.Tensor | None, costs: torch.Tensor, k: float
) -> dict:
    """How two class maps of the same image differ: the count, and whether every differing pixel is a
    near-tie (``near_ties`` of ``probs``, (B,H*W,M) from either path; None for one class). Fixed-k routing."""
    differ = (fast != reference).reshape(-1)
    ties = torch.zeros_like(differ) if probs is None else near_ties(probs, costs, k).reshape(-1)
    return {
        "differing": int(differ.sum()),
        "near_ties": int(ties.sum()),
        "pixels": differ.numel(),
        "only_near_ties_differ": bool((differ <= ties).all()),
    }


class RoutedGraph(nn.Module):
    """Routed inference as one plain forward on a fixed class map, for counters that trace a graph.

    Same computation as ``routed.upscale`` without folding or chunks: memory grows with H*W, so it is
    meant for checks on small images.
    """

    def __init__(self, model: nn.Module, classes: torch.Tensor, refine: bool = True):
        """``classes``: the (H,W) or (1,H,W) class map of one image; it fixes the output size."""
        super().__init__()
        self.model = model
        self.hr_size = tuple(int(n) for n in classes.shape[-2:])
        self.classes = classes.reshape(-1)
        self.refine = refine

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR image, class probabilities); the probabilities are returned so a tracer keeps them."""
        model = self.model
        lr_norm = model.normalize(lr)
        feat = model.encode(lr_norm)
        hh, ww = self.hr_size
        coord = make_coord((hh, ww), lr.device)[None]
        cell = make_cell((hh, ww), hh * ww, lr.device)[None]
        inputs = query_inputs(feat, coord, cell)
        probs = model.class_probabilities(inputs)  # the classifier on every pixel
        residual = torch.zeros(1, hh * ww, 3, device=lr.device)
        for j, upsampler in enumerate(model.upsamplers):
            pixels = (self.classes == j).nonzero().squeeze(1)
            residual[:, pixels] = upsampler(inputs[:, pixels])
        pred = residual + model.bilinear_base(lr_norm, coord)
        pred = pred.transpose(1, 2).reshape(1, 3, hh, ww)
        if self.refine:
            pred = refine_pixels(pred, self.classes.view(1, hh, ww), model.num_classes)
        return pred + model.rgb_mean, probs
