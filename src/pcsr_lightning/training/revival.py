"""Dead hidden units of the trained MLPs drawn again, so that a tiny upsampler keeps all of its width.

A ReLU unit whose pre-activation is negative for every input gets no gradient and never recovers. PCSR's
light upsamplers are tiny (FSRCNN-PCSR's U_1: three hidden layers of 10), and Adam at the learning rates
that train them in a short schedule leaves several of their 30 units dead for good, i.e. a narrower MLP
than the one the release trained. ``DeadUnits`` counts, over ``every`` training steps, which hidden units
were ever positive; those that never were get fresh incoming weights and bias (drawn as a new
``nn.Linear`` would draw them) and zero outgoing weights, so the network's output is unchanged at that
moment and the unit learns from there, and their optimizer moments are cleared (the recycling of dormant
units of Sokar et al., 2023, with the strictest threshold: exactly zero).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from pcsr_lightning.models.mlp import MLP


class DeadUnits:
    """Watches the hidden ReLUs of ``mlps`` during training and revives the dead units every ``every`` steps."""

    def __init__(self, mlps: Iterable[MLP], every: int):
        if int(every) < 1:
            raise ValueError(f"dead units are revived every N >= 1 training steps, got {every}")
        self.every = int(every)
        # (incoming Linear, outgoing Linear, the ReLU between them) for every hidden layer
        self.layers: list[tuple[nn.Linear, nn.Linear, nn.ReLU]] = []
        for mlp in mlps:
            mods = list(mlp.layers)
            for i, m in enumerate(mods):
                if isinstance(m, nn.ReLU):
                    self.layers.append((mods[i - 1], mods[i + 1], m))
        # on the layers' device: build the watch once the model has been moved there (a stage's on_train_start)
        self.active = [torch.zeros(lin.out_features, dtype=torch.bool, device=lin.weight.device)
                       for lin, _, _ in self.layers]
        self.steps = 0
        self.revived = 0  # units drawn again so far
        self.handles = [relu.register_forward_hook(self._seen(k)) for k, (_, _, relu) in enumerate(self.layers)]

    def _seen(self, k: int):
        def hook(module, inputs, output):
            if torch.is_grad_enabled():  # training queries only: validation and targets run without grad
                positive = (output.detach() > 0).reshape(-1, output.shape[-1]).any(0)
                self.active[k] |= positive
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer | None = None) -> int:
        """Call after each optimizer step; every ``every`` calls, revives the units never active since the
        last revival and returns how many (0 in between)."""
        self.steps += 1
        if self.steps % self.every:
            return 0
        count = 0
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        for k, (lin_in, lin_out, _) in enumerate(self.layers):
            active = self.active[k]
            if distributed:  # a unit is dead only if it was dead on every rank's queries
                active = active.int()
                dist.all_reduce(active, op=dist.ReduceOp.MAX)
                active = active.bool()
            dead = ~active
            self.active[k] = torch.zeros_like(dead)
            if not dead.any():
                continue
            fresh = nn.Linear(lin_in.in_features, lin_in.out_features).to(lin_in.weight.device, lin_in.weight.dtype)
            lin_in.weight[dead] = fresh.weight[dead]
            lin_in.bias[dead] = fresh.bias[dead]
            lin_out.weight[:, dead] = 0.0
            if distributed:  # every rank takes rank 0's draw, so the replicas stay equal
                for param in (lin_in.weight, lin_in.bias):
                    dist.broadcast(param.data, src=0)
            if optimizer is not None:
                for param, index in ((lin_in.weight, (dead,)), (lin_in.bias, (dead,)),
                                     (lin_out.weight, (slice(None), dead))):
                    for value in optimizer.state.get(param, {}).values():
                        if torch.is_tensor(value) and value.shape == param.shape:
                            value[index] = 0.0
            count += int(dead.sum())
        self.revived += count
        return count
