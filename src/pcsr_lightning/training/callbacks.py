"""Callbacks of the training stages: a progress bar over the stage's steps, a model summary in the
paper's FLOPs convention, validation images and the k sweep for the trackers, and the checkpoint an
interrupted stage leaves behind."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count
from rich import get_console

from pcsr_lightning.data.datamodule import check_scale
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate_image, rows_to_csv, summarize
from pcsr_lightning.evaluation.protocol import bicubic_sr
from pcsr_lightning.io.checkpoint import LoadedModel
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import class_overlay, to_uint8
from pcsr_lightning.measure.meter import FlopsMeter
from pcsr_lightning.models import PCSR
from pcsr_lightning.models.sampler import output_size
from pcsr_lightning.training.stages import NonFiniteTraining

# ------------------------------------------------------------------ console


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


_LIGHTNING_TIP = _DropMessage("💡 Tip: For seamless cloud logging")


def quiet_intended_messages() -> None:
    """Silence, one by one, the messages every stage would print about behaviour that is intended here:

    - "Found N module(s) in eval mode at the start of training": the frozen parts of a stage are kept
      in eval mode on purpose (CARN's BatchNorm statistics stay fixed);
    - Lightning's tip to install its cloud logger, printed for every Trainer;
    - "`isinstance(treespec, LeafSpec)` is deprecated": Lightning's own call into torch's pytree,
      nothing this project calls.
    Everything else Lightning says is kept. Calling it again changes nothing."""
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training",
                            module=r"lightning\.pytorch\.loops\.fit_loop")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            module=r"lightning\.pytorch\.utilities\._pytree")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_LIGHTNING_TIP)  # once, however often


class StageProgressBar(RichProgressBar):
    """One bar per stage: its name, steps done / steps of the stage (resumed stages start where they
    stopped), elapsed and remaining time; metrics shown without the stage prefix."""

    @property
    def total_train_batches(self) -> int | float:
        steps = self.trainer.max_steps
        return steps if steps and steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        name = getattr(self.trainer.lightning_module, "stage_name", "train")
        return f"{name:{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.train_progress_bar_id is None:  # epochs are arbitrary here: one bar for the whole stage
            super().on_train_epoch_start(trainer, pl_module)
            self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return {key.split("/", 1)[-1]: value for key, value in items.items()}


def paper_flops_rows(net: torch.nn.Module, lr_size: int, scale: float, active: int | None) -> dict[str, int]:
    """Paper-convention FLOPs of one training forward on an ``lr_size`` square LR crop, per part:
    the backbone (or original network) once, and for PCSR the classifier (used once two upsamplers are
    active) and each of the ``active`` upsamplers on every HR pixel."""

    meter = FlopsMeter(net)
    trunk = sum(meter.network((lr_size, lr_size), "paper").values())
    if not isinstance(net, PCSR):
        return {"net": trunk, "net.network": trunk}
    hh, ww = output_size((lr_size, lr_size), scale)
    active = net.num_classes if active is None else active
    rows = {"net.backbone": trunk,
            "net.upsamplers": sum(hh * ww * meter.per_query(u, "paper") for u in net.upsamplers[:active])}
    if net.classifier is not None:
        rows["net.classifier"] = hh * ww * meter.per_query(net.classifier, "paper") if active > 1 else 0
    rows["net"] = sum(rows.values())
    return rows


class PaperFlopsSummary(RichModelSummary):
    """Lightning's rich summary with the FLOPs column in the paper's convention (``measure.flops``) for
    one training forward on an ``lr_size`` crop, instead of Lightning's count (0 without an example
    input). Only the network's rows are listed."""

    def __init__(self, max_depth: int = 2, lr_size: int = 32, scale=4.0, **kwargs: Any) -> None:
        super().__init__(max_depth, **kwargs)
        low, self.scale = check_scale(scale)
        self.lr_size, self.ranged = int(lr_size), low != self.scale

    def on_fit_start(self, trainer, pl_module) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return

        summary = self._summary(trainer, pl_module)
        columns = dict(summary._get_summary_data())
        keep = [i for i, name in enumerate(columns["Name"]) if name == "net" or name.startswith("net.")]
        flops = paper_flops_rows(pl_module.net, self.lr_size, self.scale, getattr(pl_module, "num_active", None))
        columns["FLOPs"] = [get_human_readable_count(flops[columns["Name"][i]]) if columns["Name"][i] in flops
                            else "-" for i in range(len(columns["Name"]))]
        data = [(name, [values[i] for i in keep]) for name, values in columns.items()]
        self.summarize(data, summary.total_parameters, summary.trainable_parameters, summary.model_size,
                       summary.total_training_modes, flops["net"], **self._summarize_kwargs)
        get_console().print(f"FLOPs: paper convention, one training forward on a {self.lr_size}x{self.lr_size} "
                            f"LR crop at x{self.scale:g}{' (the largest of the scale range)' if self.ranged else ''}")


class SaveOnException(L.Callback):
    """Writes the stage's Lightning checkpoint when training raises, so ``resume=true`` continues from it.
    (Lightning's OnExceptionCheckpoint also makes every ``fit(ckpt_path=None)`` look for one.) Not for a
    non-finite loss: resuming from that very step would meet it again."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, NonFiniteTraining):
            return  # the weights are finite but the run diverges: the last regular checkpoint is kept as is
        trainer.save_checkpoint(self.path)


# ------------------------------------------------------------------ media for the trackers


def side_by_side(images: list[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """(3,H,W) images of one size in a row, white gaps between them."""
    h = images[0].shape[-2]
    spacer = torch.ones(3, h, gap)
    row = [images[0]]
    for img in images[1:]:
        row += [spacer, img]
    return torch.cat(row, dim=-1)


def centre_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    size = min(size, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top:top + size, left:left + size]


def logged_step(trainer) -> int:
    """The step Lightning logs a fit's metrics at: the index of the last batch trained (steps done - 1)."""
    return max(trainer.global_step - 1, 0)


def log_images(trainer, key: str, images: list[torch.Tensor], captions: list[str]) -> None:
    """(3,H,W) images in [0,1] to every logger that takes images (wandb, TensorBoard), at the step of the
    validation metrics they go with."""

    arrays, step = [to_uint8(img) for img in images], logged_step(trainer)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key, arrays, step=step, caption=captions)
        elif isinstance(logger, TensorBoardLogger):
            for i, array in enumerate(arrays):
                logger.experiment.add_image(f"{key}/{i}", array, step, dataformats="HWC")


class ValidationImages(L.Callback):
    """At each validation of a fit: the first ``images`` validation images as a centre crop of
    ``crop`` HR pixels, bicubic | SR | HR side by side (``<stage>/val_images``), and the class map of
    routed inference once the stage routes (``<stage>/val_class_maps``, red = heavy). With several
    validation scales each scale's images go under its own keys (``<stage>/val_images_x3``), since each
    scale's loader counts its batches from 0."""

    def __init__(self, images: int = 2, crop: int = 96):
        self.images, self.crop = int(images), int(crop)
        self._rows: dict[str, list[torch.Tensor]] = {}
        self._maps: dict[str, list[torch.Tensor]] = {}

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._rows, self._maps = {}, {}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        if batch_idx >= self.images or not isinstance(outputs, dict):
            return

        tag = batch["tag"][0] if "tag" in batch else ""
        hr, lr, sr = batch["hr"][0].cpu(), batch["lr"][0].cpu(), outputs["sr"][0].detach().float().cpu()
        bicubic = bicubic_sr(hr, lr)
        row = side_by_side([centre_crop(x.clamp(0, 1), self.crop) for x in (bicubic, sr, hr)])
        self._rows.setdefault(tag, []).append(row)
        if outputs.get("classes") is not None:
            overlay = class_overlay(sr, outputs["classes"][0], pl_module.net.num_classes)
            self._maps.setdefault(tag, []).append(centre_crop(overlay, self.crop * 2))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        stage = pl_module.stage_name
        for tag, rows in self._rows.items():
            at = f" at x{tag[2:]}" if tag else ""
            step = trainer.global_step
            captions = [f"bicubic | SR | HR{at}, image {i}, after {step} steps" for i in range(len(rows))]
            log_images(trainer, f"{stage}/val_images{tag}", rows, captions)
        for tag, maps in self._maps.items():
            at = f" at x{tag[2:]}" if tag else ""
            log_images(trainer, f"{stage}/val_class_maps{tag}", maps,
                       [f"upsampler per pixel at k=0 (red = heavy){at}, image {i}" for i in range(len(maps))])
        self._rows, self._maps = {}, {}


K_SWEEP_COLUMNS = ["setting", "k", "gflops_paper", "psnr", "psnr_y", "ssim", "heavy_share"]


class KSweep(L.Callback):
    """At the end of a PCSR run's last stage: PSNR / PSNR-Y / SSIM against GFLOPs (paper convention,
    whole validation images) for each k in ``ks`` and both ends (all-light, all-heavy), as a wandb
    table and line plot (``k_sweep/psnr_vs_gflops``) and as ``k_sweep.csv`` beside the CSV metrics."""

    def __init__(self, ks: list[float] = (-1.0, 0.0, 0.5, 1.0, 2.0)):
        self.ks = [float(k) for k in ks]
        self.rows: list[dict] = []

    def on_train_end(self, trainer, pl_module) -> None:
        if not getattr(pl_module, "routes", False) or not trainer.is_global_zero or trainer.datamodule is None:
            return
        loaders = trainer.datamodule.val_dataloader()
        if isinstance(loaders, list):  # several validation scales: the sweep is at the stage's own
            loaders = next((d for d in loaders if d.dataset.scale == pl_module.scale), loaders[-1])
        self.rows = k_sweep_rows(pl_module.net, loaders, pl_module.scale, self.ks)
        log_k_sweep(trainer, self.rows)


@torch.no_grad()
def k_sweep_rows(net: PCSR, loader, scale: float, ks: list[float]) -> list[dict]:
    """Mean metrics and GFLOPs per k (and both ends) over the loader's (LR, HR) images."""

    settings = EvalSettings(ckpt="", hr_dir="", scale=scale, ks=ks, ends=True, metrics=("psnr", "psnr_y", "ssim"))
    loaded, meter = LoadedModel(net, "pcsr", {}), FlopsMeter(net)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    records = []
    try:
        for i, batch in enumerate(loader):
            hr, lr = batch["hr"][0].to(device), batch["lr"][0].to(device)
            records += evaluate_image(loaded, meter, f"val{i}", hr, lr, settings)
    finally:
        net.train(was_training)
    rows = summarize(records)
    order = {"all-light": 0, "k": 1, "all-heavy": 2}
    rows.sort(key=lambda r: (order.get(r["setting"], 3), r["gflops_paper"]))
    return [{c: r.get(c) for c in K_SWEEP_COLUMNS} for r in rows]


def log_k_sweep(trainer, rows: list[dict]) -> None:

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb  # wandb is slow to import and only needed when logging to it

            data = [[r[c] for c in K_SWEEP_COLUMNS] for r in rows]
            table = wandb.Table(columns=K_SWEEP_COLUMNS, data=data)
            curve = wandb.Table(columns=K_SWEEP_COLUMNS, data=[d for d in data if d[0] == "k"])
            plot = wandb.plot.line(curve, "gflops_paper", "psnr", title="PSNR (RGB) vs GFLOPs (paper) over k")
            logger.log_metrics({"k_sweep/table": table, "k_sweep/psnr_vs_gflops": plot}, step=trainer.global_step)
        elif isinstance(logger, CSVLogger):
            write_text(rows_to_csv(K_SWEEP_COLUMNS, rows), Path(logger.log_dir) / "k_sweep.csv")
        elif isinstance(logger, TensorBoardLogger):
            for r in (r for r in rows if r["setting"] == "k"):
                logger.experiment.add_scalar("k_sweep/psnr_vs_mflops", r["psnr"], round(r["gflops_paper"] * 1000))
