"""The staged pipeline: build the network once, train its stages in order, hand weights over through
``manifest.json``, and continue an interrupted run (``resume=true``).

Stage kinds follow the model: an original network has one stage; PCSR with M upsamplers has stage 0
(``BackboneStage``) then stages 1..M-1 (``UpsamplerStage``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from pcsr_lightning.io.checkpoint import CheckpointError, build_model, load_weights, save_checkpoint
from pcsr_lightning.models import PCSR
from pcsr_lightning.training.callbacks import SaveOnException
from pcsr_lightning.training.manifest import Manifest, StageRecord, open_run
from pcsr_lightning.training.stages import BackboneStage, OriginalStage, Stage, UpsamplerStage

log = logging.getLogger(__name__)
FINAL_NAME = "final.ckpt"
EXCEPTION_NAME = "on_exception"


@dataclass
class StagePlan:
    name: str
    module: type[Stage]
    steps: int
    options: dict = field(default_factory=dict)


def instantiate(node, **kwargs):
    """Hydra's instantiate, but a bad path or an impossible setting surfaces as its own clear error."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, (FileNotFoundError, ValueError, TypeError)):
            raise cause from None
        raise


def stage_plan(cfg: DictConfig, net: torch.nn.Module) -> list[StagePlan]:
    steps = cfg.profile.steps
    if isinstance(net, PCSR):
        plan = [StagePlan("stage0", BackboneStage, int(steps.stage0))]
        plan += [StagePlan(f"stage{j}", UpsamplerStage, int(steps.stage), {"index": j})
                 for j in range(1, net.num_classes)]
        return plan
    return [StagePlan("original", OriginalStage, int(steps.original))]


def is_main_process() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


def latest_lightning_checkpoint(folder: Path) -> Path | None:
    """The newest of the stage's ``last.ckpt`` and the checkpoint written when it was interrupted."""
    found = [p for p in (folder / "last.ckpt", folder / f"{EXCEPTION_NAME}.ckpt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def load_stage_weights(net: torch.nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"the manifest names {path} as a finished stage's weights, but it is missing")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    load_weights(net, payload["state_dict"], str(path))


def open_manifest(cfg: DictConfig, run_dir: Path, kind: str) -> Manifest:
    fresh = Manifest(experiment=str(cfg.name), backbone=str(cfg.backbone.name), kind=kind)
    return open_run(run_dir, fresh, bool(cfg.resume), is_main_process())


def stage_config(cfg: DictConfig, plan: StagePlan, module: Stage) -> dict:
    return {
        "module": f"{plan.module.__module__}.{plan.module.__qualname__}",
        "steps": plan.steps,
        **plan.options,
        "trainable": module.trainable_names(),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "scheduler": {**OmegaConf.to_container(cfg.scheduler, resolve=True), "T_max": max(plan.steps, 1)},
        "batch_size": int(cfg.data.batch_size),
        "queries": cfg.data.queries,
    }


def run_pipeline(cfg: DictConfig, loggers: list | None = None, callbacks: list | tuple = ()) -> Manifest:
    """Train every stage not yet done; returns the final manifest."""
    run_dir = Path(cfg.paths.output_dir).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    model_config = OmegaConf.to_container(cfg.model.net, resolve=True)
    net = build_model(model_config)
    kind = "pcsr" if isinstance(net, PCSR) else "original"
    if kind != cfg.model.kind:
        raise ValueError(f"model.kind is {cfg.model.kind!r} but model.net builds a {type(net).__name__}")
    plans = stage_plan(cfg, net)
    manifest = open_manifest(cfg, run_dir, kind)
    datamodule = instantiate(cfg.data)
    for i, plan in enumerate(plans):
        stage_dir = run_dir / "stages" / plan.name
        record = manifest.stage(plan.name)
        if record is not None and record.status == "done":
            log.info("stage %s is done (%s): loading its weights", plan.name, record.checkpoint)
            load_stage_weights(net, record.checkpoint)
            continue
        L.seed_everything(int(cfg.seed) + i, workers=True)
        module = plan.module(net, optimizer=instantiate(cfg.optimizer),
                             scheduler=instantiate(cfg.scheduler, T_max=max(plan.steps, 1)),
                             name=plan.name, scale=int(cfg.data.scale), **plan.options)
        counts = module.parameter_counts()
        log.info("stage %s: %d trainable / %d frozen parameters, %d steps", plan.name,
                 counts["params_trainable"], counts["params_frozen"], plan.steps)
        ckpt_dir = stage_dir / "lightning"
        record = StageRecord(plan.name, "running", str(ckpt_dir), stage_config(cfg, plan, module))
        manifest.put(record)
        if is_main_process():
            manifest.save(run_dir)
        trainer = instantiate(
            cfg.trainer,
            max_steps=plan.steps,
            default_root_dir=str(stage_dir),
            logger=list(loggers) if loggers else False,
            callbacks=[
                *[instantiate(c) for c in (cfg.callbacks or {}).values()],
                ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True,
                                every_n_train_steps=int(cfg.profile.checkpoint_every)),
                SaveOnException(ckpt_dir / f"{EXCEPTION_NAME}.ckpt"),
                *callbacks,
            ],
        )
        resume_from = latest_lightning_checkpoint(ckpt_dir)
        if resume_from is not None:
            log.info("stage %s continues from %s", plan.name, resume_from)
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
        results = trainer.validate(module, datamodule=datamodule, verbose=False)
        prefix = f"{plan.name}/"
        metrics = {k[len(prefix):]: float(v) for k, v in (results[0] if results else {}).items()
                   if k.startswith(prefix)}
        metrics.update(counts, steps=int(trainer.global_step))
        model_path = stage_dir / "model.ckpt"
        manifest.put(StageRecord(plan.name, "done", str(model_path), record.config, metrics))
        if trainer.is_global_zero:
            meta = {"experiment": str(cfg.name), "stage": plan.name, "steps": int(trainer.global_step)}
            save_checkpoint(model_path, net, model_config, meta)
            if i == len(plans) - 1:
                final = save_checkpoint(run_dir / FINAL_NAME, net, model_config, meta)
                manifest.final_checkpoint = str(final.resolve())
            manifest.save(run_dir)
    if manifest.final_checkpoint is None and is_main_process():
        # every stage was already done (a finished run resumed again): write the final checkpoint
        final = save_checkpoint(run_dir / FINAL_NAME, net, model_config, {"experiment": str(cfg.name)})
        manifest.final_checkpoint = str(final.resolve())
        manifest.save(run_dir)
    return manifest
