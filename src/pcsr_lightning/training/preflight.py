"""Checks of a training config that run before the run folder is written: numbers, devices, and the
message that reports a refused config in one line.

A bad learning rate, a device the machine lacks or a trainer setting Lightning rejects would otherwise
surface only once the manifest, the first stage's record and ``.hydra/`` exist, or hours later as a NaN.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from pathlib import Path

import torch
from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pcsr_lightning.io.files import check_not_within
from pcsr_lightning.io.weights import model_reads

GPU_NAMES = ("gpu", "cuda")
# What a refused config raises while it is checked: each becomes one ``error:`` line (``one_line``).
REFUSALS = (ValueError, TypeError, FileNotFoundError, HydraException, OmegaConfBaseException,
            MisconfigurationException)


def one_line(err: BaseException) -> str:
    """A refusal's message on one line: an OmegaConf error names its key, Hydra's its cause."""
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    key = getattr(err, "full_key", None)
    return f"{line} (at {key})" if isinstance(err, OmegaConfBaseException) and key and key not in line else line


def finite_positive(value, name: str, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return number


def check_numbers(cfg: DictConfig) -> None:
    """Learning rates, the scheduler's floor and the number of upsamplers, before the network is built."""
    finite_positive(cfg.optimizer.get("lr"), "optimizer.lr")
    if cfg.scheduler is not None and "eta_min" in cfg.scheduler:
        finite_positive(cfg.scheduler.eta_min, "scheduler.eta_min", allow_zero=True)
    if cfg.model.kind == "pcsr":
        m = cfg.model.get("num_classes")
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"model.num_classes must be an integer >= 1, got {m!r}")


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(trainer: DictConfig) -> None:
    """trainer.devices against the CUDA devices of this machine (per node), said in numbers. Forms
    Lightning takes: a count (-1: all), ``"auto"``, a list of ids, or the same as a string."""
    devices = trainer.get("devices", "auto")
    available = cuda_count()
    if available == 0:
        raise ValueError(f"trainer.accelerator={trainer.accelerator} but this machine has no CUDA device "
                         "(torch.cuda.is_available() is False): train with trainer=cpu")
    if isinstance(devices, str):
        text = devices.strip().strip("[]")
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if text in ("auto", "-1") or not parts or not all(part.isdigit() for part in parts):
            return  # all of them, or a form Lightning itself names below
        devices = [int(part) for part in parts] if "," in text else int(parts[0])
    if isinstance(devices, bool):
        return
    if isinstance(devices, int):
        if devices > available:
            raise ValueError(f"trainer.devices={devices} asks for {devices} CUDA devices, this machine has {available}")
        return
    missing = [int(d) for d in devices if int(d) >= available]
    if missing:
        raise ValueError(f"trainer.devices={list(devices)} names CUDA device(s) {missing}, this machine has "
                         f"{available} (ids 0..{available - 1})")


@contextmanager
def _quiet_device_report():
    """The throwaway Trainer below would print the 'GPU available' lines every real one prints again."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    disabled, log.disabled = log.disabled, True
    try:
        yield
    finally:
        log.disabled = disabled


def check_trainer(cfg: DictConfig) -> int:
    """The trainer config as Lightning would take it, on this machine; returns the world size (devices
    x nodes), which splits the batch. A Trainer is built and dropped: it creates no file or folder."""
    trainer = cfg.trainer
    if str(trainer.get("accelerator", "auto")).lower() in GPU_NAMES:
        check_gpus(trainer)
    try:
        with _quiet_device_report():
            built = instantiate(trainer, max_steps=1, logger=False, callbacks=[], enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ValueError(f"trainer: {one_line(cause)}") from None
    except (MisconfigurationException, TypeError, ValueError) as err:
        raise ValueError(f"trainer: {one_line(err)}") from None
    return int(built.world_size)


def folders_read(cfg: DictConfig) -> list[Path]:
    """The folders a training job reads: every existing folder named in ``data`` (the image folders, a
    DIV2K root) and the warm start's checkpoint when it is a folder or a run's manifest."""
    found: list[Path] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and node and Path(node).expanduser().is_dir():
            found.append(Path(node).expanduser())

    walk(OmegaConf.to_container(cfg.data, resolve=True))
    checkpoint = (cfg.get("init") or {}).get("checkpoint")
    found += [p for p in model_reads(checkpoint) if p.is_dir()] if isinstance(checkpoint, str) else []
    return found


def check_run_folder(run_dir: Path, cfg: DictConfig) -> None:
    """The run folder (checkpoints, logs, the manifest) never lies inside a folder the job reads: its files
    would become training or validation images, or land in the model folder it starts from."""
    check_not_within(run_dir, folders_read(cfg), "the run folder")
