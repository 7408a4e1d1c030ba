"""LIIF-style MLP: the parent supplies the input size, the config only the hidden widths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pcsr_lightning.models.tails import count


class MLP(nn.Module):
    """(Linear, ReLU) per hidden width, then a Linear to ``out_dim``.

    Submodule names (``layers.0``, ``layers.2`` ...) match the PCSR release so its weights load as is.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]):
        super().__init__()
        in_dim, out_dim = count(in_dim, "MLP in_dim"), count(out_dim, "MLP out_dim")
        hidden_list = [count(w, "MLP hidden width") for w in hidden_list]
        layers: list[nn.Module] = []
        last = in_dim
        for width in hidden_list:
            layers += [nn.Linear(last, width), nn.ReLU(inplace=True)]
            last = width
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.hidden_list = hidden_list

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self.layers if isinstance(m, nn.Linear)]

    def macs_per_query(self) -> int:
        """Multiply-adds for one query (biases free), the unit every FLOPs count here builds on."""
        return sum(lin.in_features * lin.out_features for lin in self.linears)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
