"""The recipes in conf/experiment/: each composes and plans its stages, and the retraining and paper
recipes pin the values their results need; the studies that run them (conf/study/retrain*.yaml) pass only
their overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pcsr_lightning.apps.train_app import run_job
from pcsr_lightning.config import compose_config, config_dir
from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.training.pipeline import stage_plan

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
# the values a recipe leaves to the command line (`???`), by recipe
REQUIRED = {"retrain": ["data.train.path", "data.val.path", "init.checkpoint"], "paper": ["data.train.root"]}
RETRAIN_FILLED = ["data.train.path=/photos/train", "data.val.path=/photos/heldout", "init.checkpoint=/released.ckpt"]


def required_of(recipe: str) -> list[str]:
    if recipe.startswith(("retrain_", "gate_")):
        return REQUIRED["retrain"]
    return REQUIRED["paper"] if recipe.endswith(("_paper", "_anyscale")) else []


def missing_values(node, prefix: str = "") -> list[str]:
    """The keys left ``???``, interpolations unresolved."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)
    if node == "???":
        return [prefix.rstrip(".")]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return sorted(k for key, value in items for k in missing_values(value, f"{prefix}{key}."))


def composed(recipe: str, overrides=()):
    filled = [f"{key}=/dummy/{key}" for key in required_of(recipe)]
    return compose_config([f"experiment={recipe}", *filled, *overrides], "/dummy/run")


def plan(cfg) -> list[tuple[str, str, int]]:
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    return [(p.name, p.module_path.rsplit(".", 1)[-1], p.steps) for p in stage_plan(cfg, net)]


def resolved(cfg, *keys) -> dict:
    return {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys}


def test_the_recipes_are_the_ones_documented():
    assert RECIPES == sorted([*(f"{b}_{k}" for b in ("fsrcnn", "carn", "srresnet") for k in ("original", "pcsr")),
                              *(f"{b}_pcsr_paper" for b in ("fsrcnn", "carn", "srresnet")),
                              "retrain_fsrcnn", "retrain_carn", "retrain_fsrcnn_paper", "retrain_carn_paper",
                              "gate_fsrcnn", "gate_carn", "fsrcnn_pcsr_anyscale", "fsrcnn_pcsr_anyscale_cpu"])


def test_the_anyscale_recipes_are_the_fixed_ones_with_a_scale_range():
    """The paper's schedule (and the quick profile's) with each crop's scale drawn from [1, 4]."""
    for recipe, fixed in (("fsrcnn_pcsr_anyscale", "fsrcnn_pcsr_paper"), ("fsrcnn_pcsr_anyscale_cpu", "fsrcnn_pcsr")):
        cfg, base = composed(recipe), composed(fixed)
        assert list(cfg.data.scale) == [1, 4] and list(cfg.data.val_scales) == [2, 3, 4]
        assert cfg.data.queries == 1024 and cfg.data.lr_patch == 32
        keys = ("model", "optimizer", "scheduler", "trainer", "profile", "init", "seed", "name")
        assert resolved(cfg, *keys) == resolved(base, *keys)
        assert plan(cfg) == plan(base)


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_and_plans_its_stages(recipe):
    bare = compose_config([f"experiment={recipe}"], "/dummy/run")
    assert missing_values(bare) == sorted(required_of(recipe))  # what the command line must give
    cfg = composed(recipe)
    assert missing_values(cfg) == []
    resolved(cfg, "data", "model", "optimizer", "scheduler", "trainer", "profile", "init", "seed", "name")
    backbone = recipe.removeprefix("retrain_").removeprefix("gate_").split("_")[0]
    kind = "original" if "original" in recipe else "pcsr"
    assert (cfg.backbone.name, cfg.model.kind, cfg.name) == (backbone, kind, f"{backbone}_{kind}")
    names = [name for name, *_ in plan(cfg)]
    if kind == "original":
        assert names == ["original"]
    elif recipe.startswith("gate_"):
        assert names == ["stage0", "stage1", "gate"]
    elif recipe.startswith("retrain_"):
        assert names == ["stage0", "stage1", "stage1_routed"]
        assert [n for n, *_ in plan(composed(recipe, ["model.num_classes=3"]))] == [
            "stage0", "stage1", "stage1_routed", "stage2", "stage2_routed"]
    else:
        assert names == ["stage0", "stage1"]
        assert [n for n, *_ in plan(composed(recipe, ["model.num_classes=3"]))] == ["stage0", "stage1", "stage2"]


# A short paper stage, then a long stage of U_1 alone with dead units revived (chosen on the photo pool's
# validation split; CARN's steps fit its slower backbone into about the same hour on 2 CPU cores).
RECIPE_SCHEDULES = {"fsrcnn": (4250, 20000, 250), "carn": (4500, 10000, 250)}


@pytest.mark.parametrize("backbone", ["fsrcnn", "carn"])
def test_the_retraining_recipe_pins_the_headline_run(backbone):
    cfg = compose_config([f"experiment=retrain_{backbone}", *RETRAIN_FILLED], "/dummy/run")
    stage_steps, routed_steps, revive = RECIPE_SCHEDULES[backbone]
    assert plan(cfg) == [("stage0", "BackboneStage", 6000), ("stage1", "UpsamplerStage", stage_steps),
                         ("stage1_routed", "RoutedUpsamplerStage", routed_steps)]
    assert cfg.data.train._target_.endswith("ImageFolder") and cfg.data.train.path == "/photos/train"
    assert cfg.data.val.path == "/photos/heldout"
    assert (cfg.data.batch_size, cfg.data.queries, cfg.data.crops_per_image) == (16, 4096, 16)
    assert (cfg.optimizer._target_, cfg.optimizer.lr) == ("torch.optim.Adam", 3e-3)
    assert (cfg.scheduler._target_, cfg.scheduler.eta_min) == ("torch.optim.lr_scheduler.CosineAnnealingLR", 1e-7)
    assert OmegaConf.to_container(cfg.init) == {"weights": "pytorch", "checkpoint": "/released.ckpt",
                                                "stages": ["stage0"]}
    assert (cfg.seed, cfg.trainer.accelerator, cfg.model.num_classes, cfg.callbacks) == (0, "cpu", 2, {})
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    stages = {p.name: p.module(net, lambda params: None, name=p.name) for p in stage_plan(cfg, net)}
    assert stages["stage1"].lr_scale == {"classifier": 0.3333}  # C at 1e-3 beside U_1's 3e-3
    assert (stages["stage1"].l1_weight, stages["stage1"].average_weight) == (1000.0, 3.0)
    routed = stages["stage1_routed"]
    assert (routed.skip_hardest, routed.p_power, routed.lr_scale, routed.teacher_weight) == (0.0, 0.5, {}, 0.0)
    assert stages["stage1"].revive_every == routed.revive_every == revive


@pytest.mark.parametrize("backbone, lr", [("fsrcnn", 1e-3), ("carn", 2e-4)])
def test_the_gpu_retraining_recipe_is_the_cpu_one_with_the_papers_stage_1_schedule(backbone, lr):
    cfg = compose_config([f"experiment=retrain_{backbone}_paper", *RETRAIN_FILLED], "/dummy/run")
    cpu = compose_config([f"experiment=retrain_{backbone}", *RETRAIN_FILLED], "/dummy/run")
    assert plan(cfg) == [("stage0", "BackboneStage", 2_000_000), ("stage1", "UpsamplerStage", 500_000),
                         ("stage1_routed", "RoutedUpsamplerStage", 150_000)]
    assert (cfg.data.batch_size, cfg.data.queries, cfg.data.lr_patch * cfg.data.scale) == (16, None, 128)
    assert cfg.optimizer.lr == lr == cfg.backbone.lr and cfg.trainer.accelerator == "gpu"
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    stages = {p.name: p.module(net, lambda params: None, name=p.name) for p in stage_plan(cfg, net)}
    assert stages["stage1"].lr_scale == {"classifier": 1.0}
    # what the result depends on beyond the schedule stays the CPU recipe's
    assert resolved(cfg, "init", "seed", "data", "backbone")["init"] == resolved(cpu, "init")["init"]
    assert (cfg.seed, cfg.backbone.name, cfg.model.num_classes) == (cpu.seed, cpu.backbone.name, 2)
    assert (stages["stage1_routed"].skip_hardest, stages["stage1_routed"].p_power) == (0.0, 0.5)


@pytest.mark.parametrize("backbone, lr", [("fsrcnn", 1e-3), ("carn", 2e-4), ("srresnet", 2e-4)])
def test_the_paper_recipes_pin_the_papers_schedule(backbone, lr):
    cfg = compose_config([f"experiment={backbone}_pcsr_paper", "data.train.root=/data/DIV2K"], "/dummy/run")
    assert plan(cfg) == [("stage0", "BackboneStage", 2_000_000), ("stage1", "UpsamplerStage", 500_000)]
    assert cfg.data.train._target_.endswith("DIV2K") and cfg.data.train.root == "/data/DIV2K"
    assert (cfg.data.batch_size, cfg.data.queries, cfg.data.lr_patch * cfg.data.scale) == (16, None, 128)
    assert cfg.optimizer.lr == lr == cfg.backbone.lr
    assert (cfg.init.weights, cfg.init.checkpoint, list(cfg.init.stages)) == ("release", None, [])
    assert (cfg.seed, cfg.trainer.accelerator, cfg.trainer.devices, cfg.model.num_classes) == (0, "gpu", 1, 2)


def test_a_recipes_values_win_over_the_root_config_and_the_command_line_over_both():
    cfg = compose_config(["experiment=retrain_fsrcnn", *RETRAIN_FILLED, "optimizer.lr=1e-3", "seed=2"], "/dummy/run")
    assert (cfg.optimizer.lr, cfg.seed, list(cfg.init.stages)) == (1e-3, 2, ["stage0"])


def test_a_required_checkpoint_left_out_is_named_before_anything_is_written(tmp_path):
    cfg = compose_config(["experiment=retrain_fsrcnn", "data.train.path=/photos/train", "data.val.path=/photos/heldout",
                          "logger=none"], tmp_path / "run")
    with pytest.raises(ValueError, match="init.checkpoint is required here"):
        run_job(cfg)
    assert not (tmp_path / "run").exists()


def test_pcsr_train_prints_the_whole_pipeline_of_a_recipe(tmp_path):
    job = subprocess.run([str(Path(sys.executable).parent / "pcsr-train"), "experiment=retrain_fsrcnn", "--cfg", "job"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert job.returncode == 0, job.stderr[-2000:]
    stages = OmegaConf.create(job.stdout).model.stages
    assert list(stages) == ["stage0", "stage_j", "stage_j_routed"]
    assert stages.stage_j.module.lr_scale.classifier == 0.3333 and stages.stage_j_routed.after == "stage_j"


@pytest.mark.parametrize("backbone", ["fsrcnn", "carn"])
def test_the_gate_recipe_takes_every_paper_stage_and_trains_only_the_gate(backbone):
    cfg = compose_config([f"experiment=gate_{backbone}", *RETRAIN_FILLED], "/dummy/run")
    assert list(cfg.init.stages) == ["stage0", "stage1"] and cfg.init.checkpoint == "/released.ckpt"
    assert plan(cfg) == [("stage0", "BackboneStage", cfg.profile.steps.stage0),
                         ("stage1", "UpsamplerStage", cfg.profile.steps.stage), ("gate", "GateStage", 500)]
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    assert type(net.gate).__name__ == "LearnedGate" and sum(p.numel() for p in net.gate.parameters()) < 1000
    assert [p.trains for p in stage_plan(cfg, net)][-1] == ["gate"]
    assert cfg.data.lr_patch == 64 and cfg.backbone.name == backbone
