"""``pcsr-train``: the Hydra app, and the job wrapper that always closes its loggers.

``compose_config`` (the same config without the app) lives in ``pcsr_lightning.config``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pcsr_lightning.apps.jobs import fail, record_result
from pcsr_lightning.config import config_dir, register_resolvers
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.manifest import Manifest
from pcsr_lightning.tracking import job_overrides, model_tags, run_name, sweep_name
from pcsr_lightning.training.callbacks import quiet_intended_messages
from pcsr_lightning.training.loggers import StageWandbLogger
from pcsr_lightning.training.pipeline import PreparedRun, is_main_process, prepare_run, run_pipeline
from pcsr_lightning.training.preflight import REFUSALS, one_line
from pcsr_lightning.training.stages import NonFiniteTraining

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


def run_job(cfg: DictConfig, callbacks: Sequence = (), prepared: PreparedRun | None = None) -> Manifest:
    """One training job: loggers opened once (one wandb run per job), closed even when training fails.
    ``prepared``: the job already checked by ``prepare_run`` (else checked here, before any logger)."""
    loggers: list = []
    failed = True
    quiet_intended_messages()
    try:
        prepared = prepared or prepare_run(cfg)
        identify_job(cfg)
        loggers = build_loggers(cfg)
        manifest = run_pipeline(cfg, loggers, list(callbacks), prepared)
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


class _Held(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def file_logs_held():
    """Log records still reach the console, but the log file in the run folder gets them only when the
    block succeeds: a refused job must not leave its log file behind."""
    root = logging.getLogger()
    files = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
    held = _Held()
    for handler in files:
        root.removeHandler(handler)
    root.addHandler(held)
    ok = False
    try:
        yield
        ok = True
    finally:
        root.removeHandler(held)
        for handler in files:
            root.addHandler(handler)
            if ok:
                for record in held.records:
                    if record.levelno >= handler.level:
                        handler.handle(record)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig):
    """Check everything (``prepare_run``), then write the run's config, then train. A refused job prints
    one line, leaves nothing behind and exits 2; a NaN/inf loss stops training with exit code 1."""
    run_dir = Path(cfg.paths.output_dir).expanduser().resolve()
    try:
        with file_logs_held():
            prepared = prepare_run(cfg)  # refuses before anything is written
    except REFUSALS as err:
        return fail(2, one_line(err), run_dir)
    if is_main_process():
        save_run_config(cfg, run_dir)
    try:
        manifest = run_job(cfg, prepared=prepared)
    except NonFiniteTraining as err:
        return fail(1, str(err))
    log.info("final checkpoint: %s", manifest.final_checkpoint)
    if is_main_process():
        record_result(run_dir, manifest.metric_rows(), {"ckpt": manifest.final_checkpoint})
    return None
