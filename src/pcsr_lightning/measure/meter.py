"""FLOPs of whole images, on the routing PCSR actually chose, in both conventions.

Routed PCSR costs: the backbone once on the LR, the classifier on every HR pixel, each upsampler only on
its own pixels. Every term is *measured* by a counter (``flops.count_flops``): the backbone on the real
LR size, each MLP on one query, multiplied by the number of queries it serves (a Linear's cost is exactly
linear in the number of rows; tracing millions of queries would only cost memory).
``inference.reference.RoutedGraph`` is the same inference written as one plain forward, traced whole in
the tests to check that sum.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from pcsr_lightning.config import model_config
from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.measure.flops import CONVENTIONS, flops_by_module, group_by_prefix
from pcsr_lightning.models.pcsr import model_kind
from pcsr_lightning.models.sampler import output_size


def build_arch(name: str, original: bool = False) -> nn.Module:
    return build_model(model_config(name, original)).eval()


def all_on(num_classes: int, pixels: int, j: int) -> list[int]:
    """Counts with every pixel on upsampler ``j`` (0 = all-heavy, num_classes - 1 = all-light)."""
    return [pixels if i == j else 0 for i in range(num_classes)]


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOPs convention {convention!r}; expected one of {list(CONVENTIONS)}")


class FlopsMeter:
    """Counts for one model. Backbone/original counts depend on the LR size only, so they are kept
    per (convention, size); per-query MLP costs per convention."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._by_size: dict[tuple, OrderedDict[str, int]] = {}
        self._per_query: dict[tuple, int] = {}

    def _zeros(self, lr_size: tuple[int, int]) -> torch.Tensor:
        """Zeros on the network's device and in its dtype (counts do not depend on either)."""
        weight = next(self.model.parameters(), None)
        return torch.zeros(1, 3, *lr_size) if weight is None else weight.new_zeros(1, 3, *lr_size)

    def network(self, lr_size: tuple[int, int], convention: str) -> OrderedDict[str, int]:
        """Original network on the whole LR, or the PCSR backbone: per top-level part."""
        _check_convention(convention)
        key = (convention, tuple(lr_size))
        if key not in self._by_size:
            is_pcsr = model_kind(self.model) == "pcsr"
            module = self.model.backbone if is_pcsr else self.model.network
            prefix = "backbone" if is_pcsr else "network"
            counts = group_by_prefix(flops_by_module(module, self._zeros(lr_size), convention=convention))
            self._by_size[key] = OrderedDict((f"{prefix}.{n}" if n else prefix, v) for n, v in counts.items())
        return self._by_size[key]

    def per_query(self, mlp: nn.Module, convention: str) -> int:
        _check_convention(convention)
        key = (convention, id(mlp))
        if key not in self._per_query:
            one = mlp.linears[0].weight.new_zeros(1, mlp.in_dim)
            self._per_query[key] = sum(flops_by_module(mlp, one, convention=convention).values())
        return self._per_query[key]

    def routed(
        self, lr_size: tuple[int, int], scale: float, counts: list[int], convention: str
    ) -> OrderedDict[str, int]:
        """Backbone once + classifier on all H*W + upsampler j on counts[j] pixels."""
        model = self.model
        hh, ww = output_size(tuple(lr_size), scale)
        if len(counts) != model.num_classes or sum(counts) != hh * ww:
            raise ValueError(
                f"class counts {counts} do not cover the {hh}x{ww} output of {model.num_classes} upsamplers"
            )
        parts = OrderedDict(self.network(lr_size, convention))
        if model.classifier is not None:
            parts["classifier"] = hh * ww * self.per_query(model.classifier, convention)
        for j, upsampler in enumerate(model.upsamplers):
            parts[f"upsamplers.{j}"] = counts[j] * self.per_query(upsampler, convention)
        return parts

    def image(self, lr_size: tuple[int, int], scale: float, counts: list[int] | None, convention: str) -> int:
        """Total for one image; ``counts`` is None for an original network."""
        if counts is None:
            return sum(self.network(lr_size, convention).values())
        return sum(self.routed(lr_size, scale, counts, convention).values())
