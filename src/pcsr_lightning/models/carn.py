"""CARN-M style network as released with PCSR: one efficient residual block reused three times per
cascading block, bias-free 1x1 fusions with BatchNorm, grouped convs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pcsr_lightning.models.init import check_scheme
from pcsr_lightning.models.registry import register
from pcsr_lightning.models.tails import count, integer_scale


def _fusion(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class EfficientResidualBlock(nn.Module):
    def __init__(self, nf: int, group: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(nf, nf, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(nf, nf, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(nf, nf, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class CascadingBlock(nn.Module):
    """Three passes through the same residual block (``b1``), cascaded through c1..c3."""

    def __init__(self, nf: int, group: int):
        super().__init__()
        self.b1 = EfficientResidualBlock(nf, group)
        self.c1 = _fusion(2 * nf, nf)
        self.c2 = _fusion(3 * nf, nf)
        self.c3 = _fusion(4 * nf, nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = torch.cat([x, self.b1(x)], 1)
        o1 = self.c1(c1)
        c2 = torch.cat([c1, self.b1(o1)], 1)
        o2 = self.c2(c2)
        c3 = torch.cat([c2, self.b1(o2)], 1)
        return self.c3(c3)


class _PixelShuffleTail(nn.Module):
    def __init__(self, nf: int, scale: int, group: int):
        super().__init__()
        steps = [2, 2] if scale == 4 else [scale]
        layers: list[nn.Module] = []
        for r in steps:
            layers += [nn.Conv2d(nf, r * r * nf, 3, 1, 1, groups=group), nn.ReLU(inplace=True), nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Upsample(nn.Module):
    """Wrapper kept only so parameter names read ``upsample.up.body.*`` as in the release."""

    def __init__(self, nf: int, scale: int, group: int):
        super().__init__()
        self.up = _PixelShuffleTail(nf, scale, group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


@register
class CARN(nn.Module):
    """``scale=None`` gives the PCSR backbone (LR features, ``out_dim`` = nf channels).

    The release trains CARN from PyTorch's defaults, so both ``init`` schemes give the same weights."""

    def __init__(self, nf: int = 64, group: int = 4, scale: int | None = None, init: str = "release"):
        super().__init__()
        check_scheme(init, "CARN")
        nf, group = count(nf, "CARN nf"), count(group, "CARN group")
        if nf % group:
            raise ValueError(f"CARN nf ({nf}) must be a multiple of group ({group})")
        self.out_dim = nf
        self.scale = None if scale is None else integer_scale(scale, "CARN", (2, 3, 4))
        self.entry = nn.Conv2d(3, nf, 3, 1, 1)
        self.b1 = CascadingBlock(nf, group)
        self.b2 = CascadingBlock(nf, group)
        self.b3 = CascadingBlock(nf, group)
        self.c1 = _fusion(2 * nf, nf)
        self.c2 = _fusion(3 * nf, nf)
        self.c3 = _fusion(4 * nf, nf)
        if self.scale is not None:
            self.upsample = _Upsample(nf, self.scale, group)
            self.exit = nn.Conv2d(nf, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        c1 = torch.cat([x, self.b1(x)], 1)
        o1 = self.c1(c1)
        c2 = torch.cat([c1, self.b2(o1)], 1)
        o2 = self.c2(c2)
        c3 = torch.cat([c2, self.b3(o2)], 1)
        out = self.c3(c3)
        if self.scale is not None:
            out = self.exit(self.upsample(out))
        return out
