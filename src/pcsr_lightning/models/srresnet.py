"""MSRResNet (BasicSR's modified SRResNet): no BatchNorm, LeakyReLU(0.1), bilinear skip at the output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pcsr_lightning.models.init import check_scheme, scaled_kaiming_
from pcsr_lightning.models.registry import register
from pcsr_lightning.models.tails import count, integer_scale


class ResidualBlockNoBN(nn.Module):
    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


@register
class SRResNet(nn.Module):
    """``scale=None`` gives the PCSR backbone (trunk only, ``out_dim`` = nf channels).

    ``init="release"``: every convolution (first, residual blocks, tail) He-normal x0.1, zero bias."""

    def __init__(self, nf: int = 64, nb: int = 16, scale: int | None = None, init: str = "release"):
        super().__init__()
        nf, nb = count(nf, "SRResNet nf"), count(nb, "SRResNet nb", minimum=0)
        self.out_dim = nf
        self.scale = None if scale is None else integer_scale(scale, "SRResNet", (2, 3, 4))
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.recon_trunk = nn.Sequential(*[ResidualBlockNoBN(nf) for _ in range(nb)])
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)
        if self.scale is not None:
            r = 3 if self.scale == 3 else 2
            self.upconv1 = nn.Conv2d(nf, nf * r * r, 3, 1, 1)
            if self.scale == 4:
                self.upconv2 = nn.Conv2d(nf, nf * 4, 3, 1, 1)
            self.pixel_shuffle = nn.PixelShuffle(r)
            self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
            self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)
        if check_scheme(init, "SRResNet") == "release":
            scaled_kaiming_(c for c in self.modules() if isinstance(c, nn.Conv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.recon_trunk(self.lrelu(self.conv_first(x)))
        if self.scale is None:
            return out
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.HRconv(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
