"""The plain SR network PCSR accelerates, with the same input normalisation as its PCSR twin."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pcsr_lightning.models.registry import register


@register
class OriginalSR(nn.Module):
    """``sr = network(lr - mean) + mean``; ``network`` is a backbone built with its upsampling tail."""

    def __init__(self, network: nn.Module, rgb_mean: Sequence[float] = (0.0, 0.0, 0.0)):
        super().__init__()
        if getattr(network, "scale", None) is None:
            raise ValueError("OriginalSR needs a network built with its upsampling tail (scale=2, 3 or 4)")
        self.network = network
        self.scale = int(network.scale)
        self.register_buffer(
            "rgb_mean", torch.tensor(list(rgb_mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.network(lr - self.rgb_mean) + self.rgb_mean
