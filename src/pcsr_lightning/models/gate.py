"""A learned flat-tile gate: a few hundred weights that predict, per LR tile, how much PCSR adds over bicubic.

The training-free gate (``inference.gate.flatness_scores``) scores a tile by its largest |Laplacian|. This
network scores it by what skipping it would lose: it is trained (``training.stages.GateStage``) to predict
the log of the root mean square of PCSR's output minus the bicubic upscale over the tile's HR pixels, in
[0, 1] image units (``inference.gate.tile_residuals``). ``scores`` returns that prediction in the same
units (plus the training's eps), so the gate's rule stays the same: a tile whose score is below the
threshold is skipped.

Two 3x3 convolutions on the normalised LR (replicate padding: their reach, 2 LR pixels around the tile,
is the reach of the bicubic filling it), then the mean and the maximum of each tile's features, and a
linear head to one log-score per tile.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pcsr_lightning.models.registry import register
from pcsr_lightning.models.tails import count

INITIAL_LOG_SCORE = math.log(0.01)  # the head's first bias: a residual of 1 % of the image range


@register
class LearnedGate(nn.Module):
    """(B,3,h,w) normalised LR -> (B, ceil(h/tile), ceil(w/tile)) log-scores; ``hidden`` channels."""

    def __init__(self, hidden: int = 6):
        super().__init__()
        self.hidden = count(hidden, "LearnedGate hidden")
        self.conv1 = nn.Conv2d(3, self.hidden, 3, padding=1, padding_mode="replicate")
        self.conv2 = nn.Conv2d(self.hidden, self.hidden, 3, padding=1, padding_mode="replicate")
        self.head = nn.Linear(2 * self.hidden, 1)
        nn.init.constant_(self.head.bias, INITIAL_LOG_SCORE)

    def __repr__(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        return f"LearnedGate(hidden={self.hidden}, {params} parameters, {self.macs_per_lr_pixel()} MACs per LR pixel)"

    def macs_per_lr_pixel(self) -> int:
        """Multiply-adds of the convolutions per LR pixel (biases, ReLU and pooling free; the per-tile head
        is left out: 2 x hidden MACs per tile, under 0.1 % of the rest for 16-pixel tiles)."""
        return 9 * 3 * self.hidden + 9 * self.hidden * self.hidden

    def features(self, lr_norm: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(lr_norm))))

    def forward(self, lr_norm: torch.Tensor, tile: int) -> torch.Tensor:
        """Log-scores, one per tile (edge tiles: their pixels inside the image)."""
        if tile < 1:
            raise ValueError(f"the gate's tile must be >= 1 LR pixel, got {tile}")
        feat = self.features(lr_norm.float() if lr_norm.dtype != self.conv1.weight.dtype else lr_norm)
        b, c, h, w = feat.shape
        ny, nx = math.ceil(h / tile), math.ceil(w / tile)
        pad = (0, nx * tile - w, 0, ny * tile - h)
        ones = feat.new_ones(1, 1, h, w)
        area = F.avg_pool2d(F.pad(ones, pad), tile) if any(pad) else None
        mean = F.avg_pool2d(F.pad(feat, pad), tile)
        if area is not None:
            mean = mean / area
        # features are >= 0 after the ReLU: zero padding leaves the maximum unchanged
        peak = F.max_pool2d(F.pad(feat, pad), tile)
        pooled = torch.cat([mean, peak], 1).permute(0, 2, 3, 1)  # (B, ny, nx, 2C)
        return self.head(pooled)[..., 0]

    def scores(self, lr_norm: torch.Tensor, tile: int) -> torch.Tensor:
        """The predicted residual per tile, in [0, 1] image units (what a threshold is compared with). The
        gate learns log(residual + eps) (``GateStage``'s eps, 1e-4 by default), so this is the residual plus
        that eps: a tile predicted perfectly flat scores eps, and thresholds at or below it skip nothing."""
        return self(lr_norm, tile).float().exp()
