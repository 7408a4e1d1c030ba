"""FLOPs of whole images, on the routing PCSR actually chose, in both conventions.

Routed PCSR costs: the backbone once on the LR, the classifier on every HR pixel, each upsampler only on
its own pixels. Every term is *measured* by a counter (``flops.count_flops``): the backbone on the real
LR size, each MLP on one query, multiplied by the number of queries it serves (a Linear's cost is exactly
linear in the number of rows; tracing millions of queries would only cost memory).
``inference.reference.RoutedGraph`` is the same inference written as one plain forward, traced whole in
the tests to check that sum.

With the flat-tile gate the backbone runs on windows (``backbone_pixels`` LR pixels, halos included),
counted by its measured cost per LR pixel; skipped pixels (class M, the last count) run neither the
classifier nor an upsampler; the gate's own work comes in as ``extra`` parts, counted by the caller.
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

    def network_per_pixel(self, convention: str) -> OrderedDict[str, float]:
        """The PCSR backbone's count per LR pixel, per top-level part: measured on two sizes and checked
        to be proportional to the area (stride-1 convolutions with same padding count per output pixel)."""
        small, large = self.network((16, 16), convention), self.network((16, 24), convention)
        per_pixel = OrderedDict((n, v / 256) for n, v in small.items())
        if any(large[n] * 256 != small[n] * 384 for n in small):
            raise ValueError("this backbone's count is not proportional to the LR area: count its windows one by one")
        return per_pixel

    def per_query(self, mlp: nn.Module, convention: str) -> int:
        _check_convention(convention)
        key = (convention, id(mlp))
        if key not in self._per_query:
            one = mlp.linears[0].weight.new_zeros(1, mlp.in_dim)
            self._per_query[key] = sum(flops_by_module(mlp, one, convention=convention).values())
        return self._per_query[key]

    def routed(
        self, lr_size: tuple[int, int], scale: float, counts: list[int], convention: str,
        backbone_pixels: int | None = None, extra: dict[str, int] | None = None,
    ) -> OrderedDict[str, int]:
        """Backbone once + classifier on all H*W + upsampler j on counts[j] pixels.

        The gate's runs: ``counts`` has M + 1 entries, the last the skipped pixels (no classifier, no
        upsampler); the backbone runs on ``backbone_pixels`` LR pixels; ``extra`` parts are added as given.
        """
        model = self.model
        hh, ww = output_size(tuple(lr_size), scale)
        m = model.num_classes
        if len(counts) not in (m, m + 1) or sum(counts) != hh * ww:
            raise ValueError(f"class counts {counts} do not cover the {hh}x{ww} output of {m} upsamplers "
                             "(and the skipped pixels)")
        if backbone_pixels is None:
            parts = OrderedDict(self.network(lr_size, convention))
        else:
            parts = OrderedDict((n, round(v * backbone_pixels)) for n, v in self.network_per_pixel(convention).items())
        skipped = counts[m] if len(counts) > m else 0
        if model.classifier is not None:
            parts["classifier"] = (hh * ww - skipped) * self.per_query(model.classifier, convention)
        for j, upsampler in enumerate(model.upsamplers):
            parts[f"upsamplers.{j}"] = counts[j] * self.per_query(upsampler, convention)
        parts.update(extra or {})
        return parts

    def image(self, lr_size: tuple[int, int], scale: float, counts: list[int] | None, convention: str,
              backbone_pixels: int | None = None, extra: dict[str, int] | None = None) -> int:
        """Total for one image; ``counts`` is None for an original network."""
        if counts is None:
            return sum(self.network(lr_size, convention).values())
        return sum(self.routed(lr_size, scale, counts, convention, backbone_pixels, extra).values())
