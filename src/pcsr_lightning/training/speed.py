"""Milliseconds per optimiser step of each stage, as ``pcsr-train`` would run them.

Each stage's LightningModule is built from the composed training config (``experiment=<backbone>_<kind>``
with the paper profile's batch and the given queries), then a Lightning ``Trainer`` runs ``warmup + steps``
optimiser steps (forward, loss, backward, Adam) on one batch of real crops, repeated, so data loading is
not part of the figure. A callback times each step, synchronising CUDA when it is used.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from pcsr_lightning.config import compose_config
from pcsr_lightning.data.datamodule import TrainCrops, stage_scale
from pcsr_lightning.data.sources import SamplePhotos
from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.training.pipeline import instantiate, stage_plan


class StepTimer(L.Callback):
    """Wall time of each training step (batch start to batch end, optimiser step included)."""

    def __init__(self, device: torch.device):
        self.device, self.times_ms, self._start = device, [], 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        self.times_ms.append((time.perf_counter() - self._start) * 1e3)


class RepeatedBatch(Dataset):
    """The same ready-made batch ``count`` times (a DataLoader with ``batch_size=None`` passes it through)."""

    def __init__(self, batch: dict[str, torch.Tensor], count: int):
        self.batch, self.count = batch, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batch


def one_batch(batch_size: int, queries: int | None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch of real photo crops (scale 4, 32x32 LR, ``queries`` pixels or all)."""
    torch.manual_seed(seed)
    crops = TrainCrops(SamplePhotos(["astronaut", "coffee"]), queries=queries)
    items = [crops[i % len(crops)] for i in range(batch_size)]
    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


def time_stages(experiment: str, queries: int | None, batch: dict[str, torch.Tensor], device: str = "cpu",
                steps: int = 3, warmup: int = 1, precision: str = "32-true", overrides: Sequence[str] = ()
                ) -> list[dict]:
    """ms/step of each stage of ``experiment`` (its modules built from the composed config); the stage's
    scale is the one its training would validate at (``data.scale`` may be a range)."""
    if steps < 1 or warmup < 0 or len(batch["lr"]) < 1:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: no CUDA device is available")
    cfg = compose_config([f"experiment={experiment}", "profile=paper", f"profile.batch_size={len(batch['lr'])}",
                          f"profile.queries={'null' if queries is None else queries}", *overrides])
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    scale = stage_scale(cfg.data.scale, cfg.data.get("val_scales"))
    rows = []
    for plan in stage_plan(cfg, net):
        total = warmup + steps
        module = plan.module(net, optimizer=instantiate(cfg.optimizer),
                             scheduler=instantiate(cfg.scheduler, T_max=total), name=plan.name,
                             scale=scale, **plan.options)
        timer = StepTimer(torch.device(device))
        trainer = L.Trainer(accelerator=device, devices=1, precision=precision, max_steps=total, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, callbacks=[timer])
        trainer.fit(module, train_dataloaders=DataLoader(RepeatedBatch(batch, total), batch_size=None))
        times = timer.times_ms[warmup:]
        rows.append({"experiment": experiment, "stage": plan.name, "queries": 128 * 128 if queries is None else queries,
                     "batch": len(batch["lr"]), "ms_per_step": statistics.median(times), "times_ms": times})
    return rows
