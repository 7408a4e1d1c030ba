"""PCSR: backbone -> per-pixel classifier -> one of M upsamplers, on top of a bilinear base.

``forward`` is the soft mixture used for training; routed inference (``inference.routed.upscale``) is a
separate function on purpose: the same module trains and serves without looking at ``self.training``.
``gate`` is an optional learned flat-tile gate (``models.gate.LearnedGate``): it takes no part in
``forward``; routed inference uses it when asked to (``skip_gate="learned"``). ``fill`` is an optional
fitted fill of the gate's skipped tiles (``models.fill.LinearFill``), likewise used when asked to
(``skip_fill="linear"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pcsr_lightning.models.mlp import MLP
from pcsr_lightning.models.registry import register
from pcsr_lightning.models.sampler import query_inputs


@register
class PCSR(nn.Module):
    """``upsampler_hidden[j]`` are U_j's hidden widths, U_0 the heaviest; M = len(upsampler_hidden)."""

    def __init__(
        self,
        backbone: nn.Module,
        upsampler_hidden: Sequence[Sequence[int]],
        classifier_hidden: Sequence[int] = (),
        rgb_mean: Sequence[float] = (0.0, 0.0, 0.0),
        gate: nn.Module | None = None,
        fill: nn.Module | None = None,
    ):
        super().__init__()
        if len(upsampler_hidden) < 1:
            raise ValueError("PCSR needs at least one upsampler")
        if getattr(backbone, "scale", None) is not None:
            raise ValueError("PCSR needs a backbone without its upsampling tail (scale=None)")
        self.backbone = backbone
        in_dim = backbone.out_dim + 4
        self.upsamplers = nn.ModuleList(MLP(in_dim, 3, hidden) for hidden in upsampler_hidden)
        self.classifier = MLP(in_dim, len(upsampler_hidden), classifier_hidden) if len(upsampler_hidden) > 1 else None
        self.gate = gate  # None: no learned gate (checkpoints written before it existed have none)
        self.fill = fill  # None: no fitted fill (``pcsr fit-fill`` adds one)
        self.register_buffer(
            "rgb_mean", torch.tensor(list(rgb_mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        # Per-scale cost lists, filled by ``inference.router.cost_list``: they depend on the architecture
        # only, and a k sweep asks for them once per k.
        self.cost_cache: dict[float, torch.Tensor] = {}

    @property
    def num_classes(self) -> int:
        return len(self.upsamplers)

    def normalize(self, lr: torch.Tensor) -> torch.Tensor:
        return lr - self.rgb_mean

    def encode(self, lr_norm: torch.Tensor) -> torch.Tensor:
        """LR features, computed once per image and queried many times."""
        return self.backbone(lr_norm)

    @staticmethod
    def bilinear_base(lr_norm: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        """Bilinear value of the normalised LR at each query (border padding): (B,Q,3)."""
        grid = coord.flip(-1).unsqueeze(1)
        base = F.grid_sample(lr_norm, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return base[:, :, 0, :].permute(0, 2, 1)

    def class_probabilities(self, inputs: torch.Tensor, num_active: int | None = None) -> torch.Tensor:
        """Softmax over the first ``num_active`` classes (all by default); (…, num_active)."""
        m = num_active or self.num_classes
        if m == 1:
            return inputs.new_ones(*inputs.shape[:-1], 1)
        return F.softmax(self.classifier(inputs)[..., :m], dim=-1)

    def forward(
        self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, num_active: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft mixture over the first ``num_active`` upsamplers: every query goes through each.

        Returns the prediction (B,Q,3) in image range and the class probabilities (B,Q,num_active).
        """
        inputs, base = self.query(lr, coord, cell)
        m = num_active or self.num_classes
        probs = self.class_probabilities(inputs, m)
        residual = sum(probs[..., j : j + 1] * self.upsamplers[j](inputs) for j in range(m))
        return residual + base, probs

    def alone(
        self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, index: int, num_active: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """U_``index`` alone on every query, as routed inference uses it, and the class probabilities.

        Only U_``index`` runs (no mixture), so a step costs a fraction of ``forward``'s when it is light.
        """
        inputs, base = self.query(lr, coord, cell)
        probs = self.class_probabilities(inputs, num_active or self.num_classes)
        return self.upsamplers[index](inputs) + base, probs

    def query(self, lr: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The upsamplers' and classifier's inputs (B,Q,C+4) and the base in image range (B,Q,3)."""
        lr_norm = self.normalize(lr)
        inputs = query_inputs(self.encode(lr_norm), coord, cell)
        return inputs, self.bilinear_base(lr_norm, coord) + self.rgb_mean.view(1, 1, 3)


KINDS = ("original", "pcsr")


def model_kind(model: nn.Module) -> str:
    """``"pcsr"`` for a PCSR network, ``"original"`` for the plain network it accelerates: the one test
    checkpoints, manifests, FLOPs counts and the commands use to tell them apart."""
    return "pcsr" if isinstance(model, PCSR) else "original"
