"""Loggers whose curves follow the stages: every metric is keyed ``<stage>/<name>`` and each stage has
its own step axis ``<stage>/step`` (a new Trainer per stage starts its global step at 0 again, so one
shared axis would zig-zag). Lightning's ``epoch`` is dropped: epochs have no meaning in step-based stages.

wandb and TensorBoard are imported by Lightning only when such a logger is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from pcsr_lightning.tracking import wandb_mode


def stage_of(key: str) -> str | None:
    """``"stage1/val_psnr_k0"`` -> ``"stage1"``; keys without a stage prefix have none."""
    head, sep, _ = key.partition("/")
    return head if sep else None


def with_stage_steps(metrics: Mapping[str, Any], step: int | None) -> dict[str, Any]:
    """The metrics plus ``<stage>/step = step`` for every stage they mention, without ``epoch``."""
    out = {k: v for k, v in metrics.items() if k != "epoch"}
    if step is not None:
        for stage in {stage_of(k) for k in out} - {None}:
            out[f"{stage}/step"] = step
    return out


class StageCSVLogger(CSVLogger):
    """``metrics.csv`` with the same keys as the wandb run (``<stage>/step`` columns included)."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics(with_stage_steps(metrics, step), step)


class StageTensorBoardLogger(TensorBoardLogger):
    """TensorBoard keeps one step axis per tag, so ``<stage>/...`` tags already plot per stage."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)


class StageWandbLogger(WandbLogger):
    """One wandb run per job: every ``<stage>/*`` metric is plotted against ``<stage>/step``
    (``define_metric``), and the run is finished by ``finish`` (the job wrapper calls it, also on failure)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init["mode"] = wandb_mode(self._offline)
        self._defined: set[str] = set()

    @property
    @rank_zero_experiment
    def experiment(self):
        """The run, created on first use without Lightning's shared ``trainer/global_step`` axis."""
        if self._experiment is None:
            import wandb  # wandb is slow to import and only needed when logging to it

            self._experiment = wandb.init(**self._wandb_init)
        return self._experiment

    def define_stage(self, stage: str) -> None:
        if stage not in self._defined:
            self.experiment.define_metric(f"{stage}/step")
            self.experiment.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self._defined.add(stage)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        metrics = with_stage_steps(metrics, step)
        for stage in sorted({stage_of(k) for k in metrics} - {None}):
            self.define_stage(stage)
        self.experiment.log(metrics)

    @rank_zero_only
    def finish(self, failed: bool) -> None:
        if self._experiment is not None:
            self._experiment.finish(exit_code=1 if failed else 0)
