"""Milliseconds per training step, for every stage of every backbone, as ``pcsr-train`` would run them.

Each stage's LightningModule is built from the composed training config (``experiment=<backbone>_<kind>``
with a profile that sets batch and queries), then a Lightning ``Trainer`` runs ``warmup + steps``
optimiser steps (forward, loss, backward, Adam) on one batch of real crops, repeated, so data loading
is not part of the figure. A callback times each step, synchronising CUDA when it is used.

``python experiments/train_speed.py [--device cuda] [--backbones fsrcnn carn]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from pcsr_lightning.bench.timing import machine_info
from pcsr_lightning.config import compose_config
from pcsr_lightning.data.datamodule import TrainCrops, check_scale
from pcsr_lightning.data.sources import SamplePhotos
from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.io.files import write_text
from pcsr_lightning.training.pipeline import instantiate, stage_plan

BACKBONES = ("fsrcnn", "carn", "srresnet")
QUERIES = (None, 1024)  # the paper's all 16,384 pixels of a 128x128 crop, and the quick profile's


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


def time_stages(experiment: str, queries: int | None, batch: dict[str, torch.Tensor], device: str,
                steps: int, warmup: int, precision: str = "32-true", overrides: Sequence[str] = ()) -> list[dict]:
    """ms/step of each stage of ``experiment`` (its modules built from the composed config)."""
    cfg = compose_config([f"experiment={experiment}", "profile=paper", f"profile.batch_size={len(batch['lr'])}",
                          f"profile.queries={'null' if queries is None else queries}", *overrides])
    low, high = check_scale(OmegaConf.to_container(cfg.data, resolve=True)["scale"])
    if low != high or not float(low).is_integer():  # the timed batch is one_batch's x4 crops
        raise ValueError(f"train_speed times batches of x4 crops (one_batch); data.scale={low:g}..{high:g} of "
                         f"{experiment} is not one integer scale: drop the data.scale override")
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    rows = []
    for plan in stage_plan(cfg, net):
        total = warmup + steps
        module = plan.module(net, optimizer=instantiate(cfg.optimizer),
                             scheduler=instantiate(cfg.scheduler, T_max=total), name=plan.name,
                             scale=int(cfg.data.scale), **plan.options)
        timer = StepTimer(torch.device(device))
        trainer = L.Trainer(accelerator=device, devices=1, precision=precision, max_steps=total, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            limit_val_batches=0, callbacks=[timer])
        trainer.fit(module, train_dataloaders=DataLoader(RepeatedBatch(batch, total), batch_size=None))
        times = timer.times_ms[warmup:]
        rows.append({"experiment": experiment, "stage": plan.name, "queries": 128 * 128 if queries is None else queries,
                     "batch": len(batch["lr"]), "ms_per_step": statistics.median(times), "times_ms": times})
    return rows


def time_experiments(backbones, device: str, steps: int, warmup: int, batch_size: int, precision: str,
            pcsr_model: str = "pcsr") -> list[dict]:
    rows = []
    for backbone in backbones:
        batch = one_batch(batch_size, None)
        rows += time_stages(f"{backbone}_original", None, batch, device, steps, warmup, precision)
        for queries in QUERIES:
            batch = one_batch(batch_size, queries)
            rows += time_stages(f"{backbone}_pcsr", queries, batch, device, steps, warmup, precision,
                                [f"model={pcsr_model}"])
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| experiment | stage | batch | queries per crop | ms/step (median) |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        queries = "-" if r["stage"] == "original" else f"{r['queries']:,}"
        lines.append(f"| {r['experiment']} | {r['stage']} | {r['batch']} | {queries} | {r['ms_per_step']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    parser.add_argument("--pcsr-model", default="pcsr", choices=("pcsr", "pcsr_routed"),
                        help="the PCSR training pipeline (pcsr_routed adds each U_j alone after its stage)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit("--steps and --batch-size must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    machine = machine_info(device)
    rows = time_experiments(args.backbones, args.device, args.steps, args.warmup, args.batch_size, args.precision,
                   args.pcsr_model)
    print(f"{args.device}, {args.precision}, {machine}")
    print(table(rows))
    if args.json:


        write_text(json.dumps({"device": args.device, "precision": args.precision, "machine": machine,
                               "rows": rows}, indent=1), args.json)


if __name__ == "__main__":
    main()
