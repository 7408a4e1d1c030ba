"""A linear fill for the flat-tile gate's skipped tiles: one 5x5 filter per HR phase, fitted by least squares.

The gate fills a skipped tile without running the network, and on clean photos that fill is where the
dB go: bicubic gives up PCSR's residual on every pixel it fills. At an integer scale s each HR pixel
lies at one of s x s phases of its LR pixel, and bicubic is itself, per phase, a fixed linear filter
on the LR pixel's 5x5 neighbourhood (its 4 taps reach 2 LR pixels on each side). This module keeps
that form and lets the filter be fitted: s x s filters of 5x5 weights and a bias, the same for the
three channels, applied to the LR in image range with the border replicated, as torch's bicubic
replicates it. Built unfitted it is exactly bicubic; ``training.fill.fit_fill`` fits it by least
squares to HR photos on their flat LR pixels (where the gate skips), which is what
``pcsr fit-fill`` writes into a weight file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pcsr_lightning.models.registry import register
from pcsr_lightning.models.tails import count

RADIUS = 2  # LR pixels each side: the reach of bicubic's taps at every integer scale


def bicubic_phase_filters(scale: int, radius: int = RADIUS) -> torch.Tensor:
    """(s*s, 1, 2r+1, 2r+1): torch's bicubic upscale (``align_corners=False``) at integer ``scale`` as one
    filter per HR phase (row-major: phase dy * s + dx), read off ``F.interpolate`` of unit impulses so
    that it is torch's kernel by construction."""
    k = 2 * radius + 1
    line = 4 * radius + 1  # impulses at the centre +- radius stay clear of the replicated ends
    centre = 2 * radius
    impulses = torch.eye(line, dtype=torch.float64)[centre - radius : centre + radius + 1]  # (k, line)
    out = F.interpolate(impulses[:, None, None, :], size=(1, line * scale), mode="bicubic", align_corners=False)
    taps = out[:, 0, 0, centre * scale : (centre + 1) * scale].T  # (s phases, k offsets)
    return torch.einsum("yi,xj->yxij", taps, taps).reshape(scale * scale, 1, k, k).float()


@register
class LinearFill(nn.Module):
    """(B,3,h,w) LR in image range -> (B,3,s*h,s*w): per HR phase a (2r+1)^2 filter plus a bias.

    ``weight`` and ``bias`` are buffers: the fill is fitted in closed form, never by gradient steps, so
    it takes no part in an optimiser's parameters."""

    def __init__(self, scale: int = 4, radius: int = RADIUS):
        super().__init__()
        self.scale = count(scale, "LinearFill scale")
        self.radius = count(radius, "LinearFill radius")
        self.register_buffer("weight", bicubic_phase_filters(self.scale, self.radius))
        self.register_buffer("bias", torch.zeros(self.scale * self.scale))

    def __repr__(self) -> str:
        return (f"LinearFill(x{self.scale}, {self.weight.numel() + self.bias.numel()} weights, "
                f"{self.macs_per_hr_pixel()} MACs per HR pixel)")

    @property
    def taps(self) -> int:
        return 2 * self.radius + 1

    def macs_per_hr_pixel(self) -> int:
        """Multiply-adds per HR pixel, three channels (the bias add is free, as in the paper's rule)."""
        return 3 * self.taps * self.taps

    def set_filters(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Replace the filters: ``weight`` (s*s, (2r+1)^2) or its (s*s, 1, 2r+1, 2r+1) form, ``bias`` (s*s)."""
        self.weight.copy_(weight.reshape(self.weight.shape))
        self.bias.copy_(bias.reshape(self.bias.shape))

    def padded(self, lr: torch.Tensor) -> torch.Tensor:
        """``lr`` with its border replicated ``radius`` pixels out: ``valid`` of a crop of it fills that crop."""
        return F.pad(lr, (self.radius,) * 4, mode="replicate")

    def valid(self, lr_padded: torch.Tensor) -> torch.Tensor:
        """(B,3,h+2r,w+2r) -> (B,3,s*h,s*w): the fill of the inner h x w LR pixels."""
        b, c, h, w = lr_padded.shape
        x = lr_padded.reshape(b * c, 1, h, w)
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        out = F.pixel_shuffle(F.conv2d(x, weight, bias), self.scale)
        return out.reshape(b, c, *out.shape[-2:])

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.valid(self.padded(lr))
