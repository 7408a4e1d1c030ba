"""The staged pipeline: build the network once (after seeding), train its stages in order, hand
weights over through ``manifest.json``, and continue an interrupted run (``resume=true``).

The stages come from ``model.stages`` in the config (conf/model/): which LightningModule trains each,
what it trains, its steps and loss weights. ``init.checkpoint`` / ``init.stages`` take the first
stages' parts from an existing checkpoint instead of training them (warm start, or a model extended
by more upsamplers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pcsr_lightning.config import extended_widths
from pcsr_lightning.data.datamodule import check_scale, check_val_scales, plain, stage_scale
from pcsr_lightning.io.checkpoint import (
    CheckpointError,
    build_model,
    check_finite,
    check_state_dict,
    load_checkpoint,
    load_weights,
    model_kind,
    read_weights_only,
    save_checkpoint,
)
from pcsr_lightning.io.manifest import FILENAME, Manifest, StageRecord, open_run
from pcsr_lightning.models import PCSR
from pcsr_lightning.models.parts import submodule
from pcsr_lightning.training.callbacks import SaveOnException, quiet_intended_messages
from pcsr_lightning.training.preflight import check_numbers, check_run_folder, check_trainer, one_line
from pcsr_lightning.training.stages import NonFiniteTraining, Stage, part_of

log = logging.getLogger(__name__)
FINAL_NAME = "final.ckpt"
EXCEPTION_NAME = "on_exception"
BEST_NAME = "best"


@dataclass
class StagePlan:
    name: str
    module: Callable[..., Stage]  # the stage's LightningModule, partially applied (trains, loss weights)
    steps: int
    trains: list[str]
    options: dict = field(default_factory=dict)

    @property
    def module_path(self) -> str:
        cls = getattr(self.module, "func", self.module)
        return f"{cls.__module__}.{cls.__qualname__}"


def instantiate(node, **kwargs):
    """Hydra's instantiate, but a bad path or an impossible setting surfaces as its own clear error."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, (FileNotFoundError, ValueError, TypeError)):
            raise cause from None
        raise


LIST_FORM = ("model.stages is a list, but it is a mapping from each stage's key to its entry, run in the order "
             "written (conf/model/pcsr.yaml): stages: {stage0: {steps: ..., module: ...}, "
             "stage_j: {name: 'stage{j}', for_j: {from: 1, below: M}, steps: ..., module: ...}}; "
             "an override names the key: model.stages.stage_j.module.average_weight=1")


def stage_plan(cfg: DictConfig, net: torch.nn.Module) -> list[StagePlan]:
    """``model.stages`` expanded (``expanded_stages``) and checked against the network: every stage
    trains at least one step, and every part of the network is trained by some stage."""
    if isinstance(net, PCSR) and int(cfg.model.num_classes) != net.num_classes:
        raise ValueError(f"model.num_classes is {cfg.model.num_classes} but model.net builds "
                         f"{net.num_classes} upsamplers")
    plans = [planned_stage(name, entry, j, net) for name, entry, j in expanded_stages(cfg.model.stages)]
    trained = {id(q) for p in plans for t in p.trains for q in submodule(net, t, f"stage {p.name}").parameters()}
    never = sorted({n.rsplit(".", 1)[0] for n, q in net.named_parameters() if id(q) not in trained})
    if never:
        raise ValueError(f"no stage of model.stages trains {never}: the pipeline and the network disagree")
    return plans


def expanded_stages(stages) -> list[tuple[str, dict, int | None]]:
    """``model.stages`` as the stages it runs, in order: (name, entry, j), j None outside ``for_j``.

    ``model.stages`` maps a key to an entry; the entries run in the order written (a config composed on
    top appends its new keys). A plain entry is one stage, named by its key. An entry with ``for_j:
    {from, below}`` is repeated for j = from .. below-1; its ``name`` holds ``{j}`` (``stage{j}``). An
    entry with ``after: KEY`` runs right after KEY's stage, for each j of KEY (it takes no ``for_j`` of
    its own): stage1, stage1_routed, stage2, stage2_routed. A null entry is left out. A key that is the
    name of one stage of a repeating entry (``stage1`` of ``stage_j``) is not a stage of its own: its
    settings are merged over that one stage's entry."""
    entries = stage_entries(stages)
    named = [(stage_name(key, entries[key], j), key, j) for key, j in run_order(entries)]
    repeated = {name: key for name, key, j in named if j is not None}
    patches = {key for key, entry in entries.items() if key in repeated and "for_j" not in entry}
    for key in patches:
        if "after" in entries[key] or "name" in entries[key] or any(
                e.get("after") == key for e in entries.values()):
            raise ValueError(f"model.stages.{key} gives settings for stage {key} of model.stages.{repeated[key]}, "
                             f"whose name and place (after:) come from {repeated[key]}")
    stages_run = [(name, key, entries[key], j) for name, key, j in named if key not in patches]
    names = [name for name, *_ in stages_run]
    if len(set(names)) != len(names):
        raise ValueError(f"model.stages gives stage names twice: {names}")
    stages_run = [(name, key, OmegaConf.to_container(OmegaConf.merge(entry, entries[name])) if name in patches
                   else entry, j) for name, key, entry, j in stages_run]
    runnable = [name for name, _, entry, _ in stages_run if "steps" in entry and "module" in entry]
    for _, key, entry, _ in stages_run:
        missing = [field for field in ("steps", "module") if field not in entry]
        if missing:
            raise ValueError(f"model.stages.{key} is no stage (it lacks {missing}) nor the name of one stage of "
                             f"a for_j entry: this pipeline's stages are {runnable}")
    return [(name, entry, j) for name, _, entry, j in stages_run]


def stage_entries(stages) -> dict[str, dict]:
    """``model.stages`` as plain, resolved entries by key, null entries left out."""
    if isinstance(stages, (ListConfig, list, tuple)):
        raise ValueError(LIST_FORM)
    if not isinstance(stages, (DictConfig, dict)):
        raise ValueError(f"model.stages must map stage keys to entries, got {stages!r}")
    entries = {}
    for key, entry in stages.items():
        entry = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else entry
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"model.stages.{key} must be a mapping (steps, module, ...), got {entry!r}")
        if "stages" in entry:
            raise ValueError(f"model.stages.{key} holds a group (stages: [...]); give each stage an entry of its "
                             "own under model.stages and run it within each j with after: KEY")
        entries[str(key)] = entry
    return entries


def run_order(entries: dict[str, dict]) -> list[tuple[str, int | None]]:
    """(key, j) of each stage in the order they run: the entries without ``after`` as written (each j of a
    ``for_j`` entry in turn), each followed by the entries that name it in ``after``, for the same j."""
    roots, followers = [], {}
    for key, entry in entries.items():
        after = entry.get("after")
        if after is None:
            roots.append(key)
        elif str(after) not in entries:
            raise ValueError(f"model.stages.{key}: after: {after}, but model.stages has no entry {after!r} "
                             f"(its entries: {list(entries)})")
        elif "for_j" in entry:
            raise ValueError(f"model.stages.{key}: an entry with after: runs for each j of the entry it follows; "
                             "it takes no for_j of its own")
        else:
            followers.setdefault(str(after), []).append(key)
    order: list[tuple[str, int | None]] = []

    def emit(key: str, j: int | None) -> None:
        order.append((key, j))
        for follower in followers.get(key, ()):
            emit(follower, j)

    for key in roots:
        repeat = entries[key].get("for_j")
        for j in [None] if repeat is None else range(int(repeat["from"]), int(repeat["below"])):
            emit(key, j)
    reached = {key for key, _ in order}
    unreached = [key for key in entries if key not in reached]
    if unreached:  # each follows another of them
        raise ValueError(f"model.stages: the after: entries {unreached} follow each other in a loop")
    return order


def stage_name(key: str, entry: dict, j: int | None) -> str:
    """An entry's stage name: its key, or for each j of a repeating entry its ``name`` with ``{j}`` filled in."""
    if j is None:
        if entry.get("name", key) != key:
            raise ValueError(f"model.stages.{key}: a stage that does not repeat is named by its key; "
                             f"name: {entry['name']} is for entries with for_j")
        return key
    pattern = str(entry.get("name", key))
    if "{j}" not in pattern:
        raise ValueError(f"model.stages.{key} repeats for each j: its name needs {{j}}, e.g. name: stage{{j}} "
                         f"(got {pattern!r})")
    return pattern.replace("{j}", str(j))


def planned_stage(name: str, entry: dict, j: int | None, net: torch.nn.Module) -> StagePlan:
    """One stage for upsampler ``j`` (None outside ``for_j``): ``{j}`` filled in the parts it trains."""
    def fill(text) -> str:
        return str(text) if j is None else str(text).replace("{j}", str(j))
    steps = int(entry["steps"])
    if steps < 1:
        raise ValueError(f"stage {name}: steps must be at least 1, got {steps} (set profile.steps)")
    trains = [fill(t) for t in entry["module"]["trains"]]
    for t in trains:
        part_of(net, t, name)
    options = {} if j is None else {"index": j}
    module = instantiate(entry["module"], trains=trains, **options)
    return StagePlan(name, module, steps, trains, options)


@dataclass
class WarmStart:
    """Parts of the first stages taken from a checkpoint (``init.checkpoint``, ``init.stages``)."""

    source: Path
    parts: dict[str, list[str]]  # stage name -> the parts loaded for it
    model: torch.nn.Module  # the source network


def checkpoint_for_stages(path: Path, stages: list[str]) -> Path:
    """A checkpoint file as given, or for a run folder / manifest.json the checkpoint written after the
    last of ``stages`` (which must be done there)."""
    if path.is_dir() or path.name == FILENAME:
        folder = path if path.is_dir() else path.parent
        manifest = Manifest.load(folder)
        for name in stages:
            record = manifest.stage(name)
            if record is None or record.status != "done":
                raise ValueError(f"init.checkpoint: {folder} has no finished stage {name!r} "
                                 f"(its stages: {[(s.name, s.status) for s in manifest.stages]})")
        return Path(manifest.stage(stages[-1]).checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"init.checkpoint: {path} not found")
    return path


@dataclass
class WarmSource:
    """The checkpoint ``init.checkpoint`` / ``init.stages`` name, loaded once."""

    stages: list[str]
    path: Path
    loaded: object  # io.checkpoint.LoadedModel


def warm_source(cfg: DictConfig) -> WarmSource | None:
    """The warm start's checkpoint, or None without one; both settings or neither."""
    init = cfg.get("init") or {}
    if OmegaConf.is_config(init) and OmegaConf.is_missing(init, "checkpoint"):
        raise ValueError("init.checkpoint is required here (init=warm_stage0, or a recipe built on it): give "
                         "init.checkpoint=PATH, a checkpoint, run folder or manifest.json")
    stages = [str(s) for s in (init.get("stages") or [])]
    path = init.get("checkpoint")
    if not stages and not path:
        return None
    if not path or not stages:
        raise ValueError("a warm start needs both init.checkpoint=PATH (a checkpoint, run folder or manifest.json) "
                         "and init.stages=[...] (the first stages of the pipeline to take from it)")
    source = checkpoint_for_stages(Path(str(path)).expanduser().resolve(), stages)
    return WarmSource(stages, source, load_checkpoint(source))


def widths_like_source(cfg: DictConfig, model_config: dict, warm: WarmSource | None) -> dict:
    """With a warm start and the default upsampler widths, the network is built like the source: its
    upsamplers keep the source's widths and the ones it lacks (``model.num_classes`` above the source's)
    continue the ladder below its lightest (``config.extended_widths``). Widths given explicitly
    (``model.net.upsampler_hidden=...``) are kept and checked against the source as they are."""
    net_node = cfg.model.get("net")
    if warm is None or cfg.model.kind != "pcsr" or not OmegaConf.is_interpolation(net_node, "upsampler_hidden"):
        return model_config
    if not isinstance(warm.loaded.model, PCSR):
        return model_config  # the kind check names the problem

    source = [list(u.hidden_list) for u in warm.loaded.model.upsamplers]
    widths = extended_widths(source, cfg.backbone.heavy_hidden, cfg.backbone.light_hidden, cfg.model.num_classes)
    if widths != model_config["upsampler_hidden"]:
        log.info("upsampler widths %s, like %s (new upsamplers: %s)", widths, warm.path, widths[len(source):])
    return {**model_config, "upsampler_hidden": widths}


def recorded_model_config(run_dir: Path) -> dict | None:
    """The model config a run folder's first recorded stage was saved with (resuming: the widths the run
    began with, also when a warm start chose them), or None for a folder without one."""
    if not (run_dir / FILENAME).is_file():
        return None
    for record in Manifest.load(run_dir).stages:
        if record.status == "done" and Path(record.checkpoint).is_file():
            return load_checkpoint(record.checkpoint).config
    return None


def plan_warm_start(warm: WarmSource | None, net: torch.nn.Module, plans: list[StagePlan]) -> WarmStart | None:
    """Check everything a warm start needs before anything is written."""
    if warm is None:
        return None
    stages, source, loaded = warm.stages, warm.path, warm.loaded
    names = [p.name for p in plans]
    if stages != names[: len(stages)]:
        raise ValueError(f"init.stages must be the first stages of this pipeline in order ({names}), got {stages}")
    if loaded.kind != model_kind(net):
        raise ValueError(f"init.checkpoint: {source} holds a model of kind {loaded.kind!r}, "
                         f"this run trains kind {model_kind(net)!r}")
    later = {t for p in plans[len(stages):] for t in p.trains}  # trained again by a stage below
    parts = {}
    for plan in plans[: len(stages)]:
        parts[plan.name] = []
        for t in plan.trains:
            try:
                check_part(loaded.model, net, t, source)
            except ValueError:
                if t in later:
                    continue  # another shape here (the classifier of an extended model): its stage starts it fresh
                raise
            parts[plan.name].append(t)
    return WarmStart(source, parts, loaded.model)


def check_part(source: torch.nn.Module, net: torch.nn.Module, path: str, where: Path) -> None:
    """The part at ``path`` exists in both networks with the same kind and widths."""
    theirs = submodule(source, path, f"init.checkpoint {where}")
    ours = submodule(net, path, "this model")
    if type(theirs) is not type(ours):
        raise ValueError(f"init.checkpoint: {path} is a {type(theirs).__name__} in {where}, "
                         f"this model's is a {type(ours).__name__}")
    if getattr(theirs, "hidden_list", None) != getattr(ours, "hidden_list", None) or \
            getattr(theirs, "out_dim", None) != getattr(ours, "out_dim", None):
        raise ValueError(f"init.checkpoint: {path} has widths {getattr(theirs, 'hidden_list', None)} -> "
                         f"{getattr(theirs, 'out_dim', None)} in {where}, this model's are "
                         f"{getattr(ours, 'hidden_list', None)} -> {getattr(ours, 'out_dim', None)}")
    mine = ours.state_dict()
    bad = [k for k, v in theirs.state_dict().items() if k not in mine or mine[k].shape != v.shape]
    if bad or len(mine) != len(theirs.state_dict()):
        raise ValueError(f"init.checkpoint: {path} in {where} does not fit this model's {path} "
                         f"(mismatched weights: {bad[:6] or sorted(set(mine) - set(theirs.state_dict()))[:6]})")


def apply_warm_start(warm: WarmStart, net: torch.nn.Module, plans: list[StagePlan], manifest: Manifest,
                     run_dir: Path, model_config: dict, experiment: str) -> None:
    """Load the parts, record each stage as done with its source; one checkpoint per stage so that
    ``resume=true`` hands weights over as for a trained stage."""
    for name, parts in warm.parts.items():
        for t in parts:
            theirs = submodule(warm.model, t, f"init.checkpoint {warm.source}")
            load_weights(submodule(net, t, "this model"), theirs.state_dict(), f"{warm.source} ({t})")
    for plan in plans:
        if plan.name not in warm.parts:
            continue
        log.info("stage %s taken from %s: %s", plan.name, warm.source, warm.parts[plan.name])
        model_path = run_dir / "stages" / plan.name / "model.ckpt"
        config = {"module": plan.module_path, "trainable": plan.trains, "init_from": str(warm.source),
                  "loaded": warm.parts[plan.name]}
        manifest.put(StageRecord(plan.name, "done", str(model_path), config, {}))
        if is_main_process():
            save_checkpoint(model_path, net, model_config,
                            {"experiment": experiment, "stage": plan.name, "init_from": str(warm.source)})
    if is_main_process():
        manifest.save(run_dir)


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
    payload = read_weights_only(path)
    state = check_state_dict(payload.get("state_dict") if isinstance(payload, dict) else None, path)
    check_finite(state, path)
    load_weights(net, state, str(path))


def open_manifest(cfg: DictConfig, run_dir: Path, kind: str) -> Manifest:
    low, high = check_scale(OmegaConf.to_container(cfg.data, resolve=True)["scale"])
    scale = plain(low) if low == high else [plain(low), plain(high)]
    fresh = Manifest(experiment=str(cfg.name), backbone=str(cfg.backbone.name), kind=kind, scale=scale)
    return open_run(run_dir, fresh, bool(cfg.resume), is_main_process())


def stage_config(cfg: DictConfig, plan: StagePlan, module: Stage) -> dict:
    return {
        "module": plan.module_path,
        "steps": plan.steps,
        **plan.options,
        "trainable": module.trainable_names(),
        "frozen": module.frozen_names(),
        "loss": module.loss_settings(),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "scheduler": {**OmegaConf.to_container(cfg.scheduler, resolve=True), "T_max": plan.steps},
        **({"lr_scale": dict(module.lr_scale)} if module.lr_scale else {}),
        "batch_size": int(cfg.data.batch_size),
        "queries": cfg.data.queries,
    }


@dataclass
class PreparedRun:
    """A training job checked against its config, the machine, the data and the run folder: nothing is
    written yet (``prepare_run``)."""

    run_dir: Path
    model_config: dict
    net: torch.nn.Module
    plans: list[StagePlan]
    manifest: Manifest
    warm: WarmStart | None
    datamodule: L.LightningDataModule


def resolved(node: DictConfig, name: str) -> dict:
    """A config node as plain data; a resolver's refusal (``model.num_classes=0``) named in one line."""
    try:
        return OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as err:
        cause = err.__cause__ if isinstance(err.__cause__, ValueError) else None
        raise ValueError(f"{name}: {one_line(cause or err)}") from None


def check_stages(cfg: DictConfig, net: torch.nn.Module, plans: list[StagePlan], manifest: Manifest) -> None:
    """Build each stage still to train once, with its optimizer and scheduler, and drop it: a bad
    ``lr_scale`` or optimizer setting is refused now rather than when its stage starts."""
    for plan in plans:
        record = manifest.stage(plan.name)
        if record is not None and record.status == "done":
            continue
        module = plan.module(net, optimizer=instantiate(cfg.optimizer),
                             scheduler=instantiate(cfg.scheduler, T_max=plan.steps),
                             name=plan.name, scale=stage_scale(cfg.data.scale, cfg.data.get("val_scales")))
        module.configure_optimizers()


def check_scales_for(kind: str, data: DictConfig) -> None:
    """An original network's tail upsamples by its one integer scale: no range, no other validation scale."""
    scales = check_val_scales(data.scale, data.get("val_scales"))
    low, high = check_scale(data.scale)
    if kind == "original" and (low != high or not low.is_integer() or scales != (int(low),)):
        raise ValueError(f"data.scale={OmegaConf.to_container(data, resolve=True)['scale']!r} and data.val_scales="
                         f"{list(scales)}: an original network upsamples by one integer scale; a scale range "
                         "or several validation scales need a PCSR (model=pcsr)")


def prepare_run(cfg: DictConfig) -> PreparedRun:
    """Everything a run needs, checked before anything is written: the numbers, the trainer on this
    machine, the network and its stages, the warm start, the run folder and the data."""
    run_dir = Path(cfg.paths.output_dir).expanduser().resolve()
    quiet_intended_messages()
    check_run_folder(run_dir, cfg)
    check_numbers(cfg)
    check_scales_for(str(cfg.model.kind), cfg.data)
    world_size = check_trainer(cfg)
    # before the network is built: one seed, one init (quietly: each stage says its own seed)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model_config = resolved(cfg.model.net, "model.net")
    recorded = recorded_model_config(run_dir) if cfg.resume else None
    source = None
    if recorded is None:
        source = warm_source(cfg)
        model_config = widths_like_source(cfg, model_config, source)
    elif "upsampler_hidden" in recorded and OmegaConf.is_interpolation(cfg.model.net, "upsampler_hidden"):
        model_config = {**model_config, "upsampler_hidden": recorded["upsampler_hidden"]}  # as the run began
    net = build_model(model_config)
    kind = model_kind(net)
    if kind != cfg.model.kind:
        raise ValueError(f"model.kind is {cfg.model.kind!r} but model.net builds a {type(net).__name__}")
    plans = stage_plan(cfg, net)
    manifest = open_manifest(cfg, run_dir, kind)
    check_stages(cfg, net, plans, manifest)
    warm = plan_warm_start(source, net, plans) if not manifest.stages else None
    if manifest.stages and (cfg.get("init") or {}).get("stages"):
        log.info("resuming %s: its manifest already records the stages; init.* is not applied again", run_dir)
    datamodule = instantiate(cfg.data)
    datamodule.check(world_size)
    return PreparedRun(run_dir, model_config, net, plans, manifest, warm, datamodule)


def run_pipeline(cfg: DictConfig, loggers: list | None = None, callbacks: list | tuple = (),
                 prepared: PreparedRun | None = None) -> Manifest:
    """Train every stage not yet done; returns the final manifest. ``prepared``: the job as
    ``prepare_run`` checked it (prepared here when not given)."""
    prepared = prepared or prepare_run(cfg)
    run_dir, manifest, net, plans = prepared.run_dir, prepared.manifest, prepared.net, prepared.plans
    run_dir.mkdir(parents=True, exist_ok=True)
    if prepared.warm is not None:
        apply_warm_start(prepared.warm, net, plans, manifest, run_dir, prepared.model_config, str(cfg.name))
    for i, plan in enumerate(plans):
        record = manifest.stage(plan.name)
        if record is not None and record.status == "done":
            log.info("stage %s is done (%s): loading its weights", plan.name, record.checkpoint)
            load_stage_weights(net, record.checkpoint)
            continue
        L.seed_everything(int(cfg.seed) + i, workers=True)
        run_stage(cfg, prepared, i, loggers, callbacks)
    if manifest.final_checkpoint is None and is_main_process():
        # every stage was already done (a finished run resumed again): write the final checkpoint
        final = save_checkpoint(run_dir / FINAL_NAME, net, prepared.model_config, {"experiment": str(cfg.name)})
        manifest.final_checkpoint = str(final.resolve())
        manifest.save(run_dir)
    return manifest


def configured_callbacks(cfg: DictConfig, loggers: list | None) -> list:
    """The ``callbacks`` group's callbacks; with no logger (``logger=none``) those that only feed a
    logger (the learning-rate monitor) are left out, as Lightning refuses them without one."""
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()]
    return callbacks if loggers else [c for c in callbacks if not isinstance(c, LearningRateMonitor)]


def stage_trainer(cfg: DictConfig, plan: StagePlan, module, stage_dir: Path, loggers: list | None,
                  callbacks: list | tuple) -> L.Trainer:
    """The stage's Trainer: its steps, the configured callbacks, the last / on-exception / best checkpoints."""
    ckpt_dir = stage_dir / "lightning"
    return instantiate(
        cfg.trainer,
        max_steps=plan.steps,
        default_root_dir=str(stage_dir),
        logger=list(loggers) if loggers else False,
        callbacks=[
            *configured_callbacks(cfg, loggers),
            ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True,
                            every_n_train_steps=int(cfg.profile.checkpoint_every)),
            SaveOnException(ckpt_dir / f"{EXCEPTION_NAME}.ckpt"),
            ModelCheckpoint(dirpath=ckpt_dir, filename=BEST_NAME, monitor=f"{plan.name}/{module.best_metric}",
                            mode="max", save_top_k=1, enable_version_counter=False),
            *callbacks,
        ],
    )


def fit_stage(trainer: L.Trainer, module, datamodule, ckpt_dir: Path, name: str) -> None:
    """Fit, continuing from the stage's last Lightning checkpoint; a non-finite loss says what is kept."""
    resume_from = latest_lightning_checkpoint(ckpt_dir)
    if resume_from is not None:
        log.info("stage %s continues from %s", name, resume_from)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    except SystemExit as err:
        # Lightning ends a Ctrl-C with sys.exit(1) raised while handling it: it stays an interruption (130).
        # Any other exit (submitit's requeue on a SLURM preemption signal) passes through unchanged.
        if trainer.interrupted and isinstance(err.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    except NonFiniteTraining as err:
        last = latest_lightning_checkpoint(ckpt_dir)
        kept = (f"the stage's last checkpoint {last} is kept (finite weights; resume=true continues from it)"
                if last else "no checkpoint of this stage was written yet")
        raise NonFiniteTraining(f"{err}; {kept}. Usual causes: a learning rate too high for this model "
                                "(optimizer.lr) or broken training images") from None


def run_stage(cfg: DictConfig, prepared: PreparedRun, i: int, loggers: list | None, callbacks: list | tuple) -> None:
    """Train stage ``i``, validate it, and record it as done (its model.ckpt; final.ckpt after the last)."""
    run_dir, manifest, net, plan = prepared.run_dir, prepared.manifest, prepared.net, prepared.plans[i]
    stage_dir = run_dir / "stages" / plan.name
    module = plan.module(net, optimizer=instantiate(cfg.optimizer),
                         scheduler=instantiate(cfg.scheduler, T_max=plan.steps),
                         name=plan.name, scale=stage_scale(cfg.data.scale, cfg.data.get("val_scales")))
    counts = module.parameter_counts()
    log.info("stage %s: %d trainable / %d frozen parameters, %d steps", plan.name,
             counts["params_trainable"], counts["params_frozen"], plan.steps)
    ckpt_dir = stage_dir / "lightning"
    record = StageRecord(plan.name, "running", str(ckpt_dir), stage_config(cfg, plan, module))
    manifest.put(record)
    if is_main_process():
        manifest.save(run_dir)
    trainer = stage_trainer(cfg, plan, module, stage_dir, loggers, callbacks)
    fit_stage(trainer, module, prepared.datamodule, ckpt_dir, plan.name)
    results = trainer.validate(module, datamodule=prepared.datamodule, verbose=False)
    prefix = f"{plan.name}/"
    metrics = {k[len(prefix):]: float(v) for loader in results for k, v in loader.items()  # each scale's loader
               if k.startswith(prefix)}
    metrics.update(counts, steps=int(trainer.global_step))
    model_path = stage_dir / "model.ckpt"
    manifest.put(StageRecord(plan.name, "done", str(model_path), record.config, metrics))
    if trainer.is_global_zero:
        meta = {"experiment": str(cfg.name), "stage": plan.name, "steps": int(trainer.global_step)}
        save_checkpoint(model_path, net, prepared.model_config, meta)
        if i == len(prepared.plans) - 1:
            final = save_checkpoint(run_dir / FINAL_NAME, net, prepared.model_config, meta)
            manifest.final_checkpoint = str(final.resolve())
        manifest.save(run_dir)
