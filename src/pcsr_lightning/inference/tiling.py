"""Tiled backbone: LR features of a huge image in bounded memory, equal to the whole-image features.

Each LR tile is extended by the backbone's receptive radius on every side, encoded, and its centre
copied into the full feature map. A feature depends only on inputs within that radius, so the
stitched map equals the whole-image one (up to the float rounding of different conv algorithms).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def receptive_radius(backbone: nn.Module, probe: int = 97) -> int:
    """Radius (LR pixels) of the input region one output feature depends on, found by autograd.

    Measures the support of the gradient of the centre feature, in float64, on a copy in eval mode whose
    parameters are made positive and whose batch norms are identities, fed a positive input: every
    (leaky) ReLU then passes everything, so no path through the architecture is dead and the radius is the
    architecture's, never less than any weights' (random or trained weights can silence the paths to the
    edge, or all of them). Cached on the module (it depends on the architecture only).
    """
    cached = getattr(backbone, "_receptive_radius", None)
    if cached is not None:
        return cached
    # a caller's inference mode would forbid the gradient, so it is left for the probe
    with torch.inference_mode(False), torch.enable_grad():
        radius = _probe_radius(backbone, probe)
    if radius >= probe // 2:
        raise ValueError(f"receptive field of {type(backbone).__name__} exceeds the {probe}px probe")
    backbone._receptive_radius = radius
    return radius


def _probe_radius(backbone: nn.Module, probe: int) -> int:
    """``receptive_radius``'s measurement; every tensor of the copy is made anew (out of place), so it also
    works on a module whose tensors were made in inference mode."""
    probe_net = copy.deepcopy(backbone).eval()
    for param in probe_net.parameters():
        param.data = param.data.double().abs() + 1e-3
    for module in probe_net.modules():
        if getattr(module, "running_var", None) is not None:  # batch norms: the identity in eval mode
            module.running_mean = torch.zeros_like(module.running_mean, dtype=torch.float64)
            module.running_var = torch.ones_like(module.running_var, dtype=torch.float64)
    probe_net.double()
    device = next(backbone.parameters()).device
    x = torch.rand(1, 3, probe, probe, dtype=torch.float64, device=device, requires_grad=True)
    probe_net(x)[0, :, probe // 2, probe // 2].sum().backward()
    support = (x.grad[0].abs().sum(0) > 0).nonzero()
    return int((support - probe // 2).abs().max())


def encode_tiled(model, lr_norm: torch.Tensor, tile: int, overlap: int | None = None) -> torch.Tensor:
    """``model.encode(lr_norm)`` computed on ``tile`` x ``tile`` LR tiles with ``overlap`` context each side.

    ``overlap`` defaults to the backbone's receptive radius, the least that keeps the result exact.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1 LR pixel, got {tile}")
    if overlap is None:
        overlap = receptive_radius(model.backbone)
    b, _, h, w = lr_norm.shape
    feat = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            ey0, ex0 = max(0, y0 - overlap), max(0, x0 - overlap)
            ey1, ex1 = min(h, y1 + overlap), min(w, x1 + overlap)
            part = model.encode(lr_norm[:, :, ey0:ey1, ex0:ex1])
            if feat is None:
                feat = part.new_empty(b, part.shape[1], h, w)
            feat[:, :, y0:y1, x0:x1] = part[:, :, y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
    return feat
