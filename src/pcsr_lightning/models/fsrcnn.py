"""FSRCNN (Dong et al. 2016), the PCSR release's variant: single-parameter PReLUs, no activation
between the mapping convs, a 9x9 deconvolution tail for the original network."""

from __future__ import annotations

import math

import torch
from torch import nn

from pcsr_lightning.models.init import check_scheme, scaled_kaiming_
from pcsr_lightning.models.registry import register
from pcsr_lightning.models.tails import count, integer_scale


@register
class FSRCNN(nn.Module):
    """``scale=None`` gives the PCSR backbone (LR features, ``out_dim`` = d channels).

    ``init="release"``: every Conv2d of head and body He-normal x0.1 with zero bias; the deconvolution
    tail and the PReLUs keep PyTorch's defaults (the release only rescales Conv2d and Linear layers it
    is given, and it is not given the tail)."""

    def __init__(self, d: int = 56, s: int = 12, m: int = 4, scale: int | None = None, init: str = "release"):
        super().__init__()
        d, s, m = count(d, "FSRCNN d"), count(s, "FSRCNN s"), count(m, "FSRCNN m", minimum=0)
        self.out_dim = d
        self.scale = None if scale is None else integer_scale(scale, "FSRCNN", (2, 3, 4))
        self.head_conv = nn.Sequential(nn.Conv2d(3, d, 5, 1, 2), nn.PReLU())
        body: list[nn.Module] = [nn.Sequential(nn.Conv2d(d, s, 1), nn.PReLU())]
        body += [nn.Conv2d(s, s, 3, 1, 1) for _ in range(m)]
        body += [nn.PReLU(), nn.Sequential(nn.Conv2d(s, d, 1), nn.PReLU())]
        self.body_conv = nn.Sequential(*body)
        if self.scale is not None:
            # out = (h-1)*s - 2p + 9 + op must equal s*h: the release uses p=3, op=1 at x4.
            pad = math.ceil((9 - self.scale) / 2)
            self.tail_conv = nn.ConvTranspose2d(
                d, 3, 9, stride=self.scale, padding=pad, output_padding=2 * pad - (9 - self.scale)
            )
        if check_scheme(init, "FSRCNN") == "release":
            scaled_kaiming_(c for part in (self.head_conv, self.body_conv) for c in part.modules()
                            if isinstance(c, nn.Conv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body_conv(self.head_conv(x))
        if self.scale is not None:
            x = self.tail_conv(x)
        return x
