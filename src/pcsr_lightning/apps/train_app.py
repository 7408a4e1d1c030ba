"""``pcsr-train``: the Hydra app, and the job wrapper that always closes its loggers.

``compose_config`` (the same config without the app) lives in ``pcsr_lightning.config``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pcsr_lightning.config import config_dir, register_resolvers
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.manifest import Manifest, open_run
from pcsr_lightning.tracking import job_overrides, model_tags, run_name, sweep_name
from pcsr_lightning.training.callbacks import quiet_intended_messages
from pcsr_lightning.training.loggers import StageWandbLogger
from pcsr_lightning.training.pipeline import is_main_process, run_pipeline

log = logging.getLogger(__name__)
CONFIG_DIR = config_dir()


def identify_job(cfg: DictConfig) -> None:
    """Fill the run's name, group and tags that ``tracking`` leaves null from the job itself."""
    t = cfg.tracking
    if t.name is None:
        t.name = run_name(str(cfg.name), job_overrides(), list(t.ignore))
    if t.group is None:
        t.group = sweep_name() or str(cfg.name)
    if t.tags is None:
        t.tags = model_tags(str(cfg.backbone.name), str(cfg.model.kind), cfg.model.get("num_classes"))


def build_loggers(cfg: DictConfig) -> list:
    """The job's loggers, each given the whole resolved config (wandb: the run config; CSV: hparams.yaml)."""
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    if loggers:
        config = OmegaConf.to_container(cfg, resolve=True)
        for logger in loggers:
            logger.log_hyperparams(config)
    return loggers


def close_loggers(loggers: list, failed: bool) -> None:
    """Finalize every logger; finish the job's wandb run (exit code 1 when the job failed)."""
    for logger in loggers:
        try:
            logger.finalize("failed" if failed else "success")
            if isinstance(logger, StageWandbLogger):
                logger.finish(failed)
        except Exception as err:  # noqa: BLE001 - closing must not hide the job's own error
            log.warning("could not close logger %s: %s", type(logger).__name__, err)


def run_job(cfg: DictConfig, callbacks: Sequence = ()) -> Manifest:
    """One training job: loggers opened once (one wandb run per job), closed even when training fails."""
    loggers: list = []
    failed = True
    quiet_intended_messages()
    try:
        identify_job(cfg)
        loggers = build_loggers(cfg)
        manifest = run_pipeline(cfg, loggers, list(callbacks))
        failed = False
        return manifest
    finally:
        close_loggers(loggers, failed)


register_resolvers()


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra would write to ``.hydra/`` (the app turns that off): written only once the run folder
    is known to accept this job, so a refused job leaves an existing run untouched."""


    hydra_cfg = HydraConfig.get()
    folder = run_dir / ".hydra"
    write_text(OmegaConf.to_yaml(cfg), folder / "config.yaml")
    write_text(OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})), folder / "hydra.yaml")
    write_text(OmegaConf.to_yaml(hydra_cfg.overrides.task), folder / "overrides.yaml")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> None:

    run_dir = Path(cfg.paths.output_dir).expanduser().resolve()
    main_process = is_main_process()
    open_run(run_dir, Manifest(str(cfg.name), str(cfg.backbone.name), str(cfg.model.kind)), bool(cfg.resume),
             main_process)  # refuses before anything is written
    if main_process:
        save_run_config(cfg, run_dir)
    manifest = run_job(cfg)
    log.info("final checkpoint: %s", manifest.final_checkpoint)
