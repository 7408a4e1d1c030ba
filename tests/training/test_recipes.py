"""The recipes in conf/experiment/: each composes and plans its stages, and the retraining and paper
recipes pin the values their results need; the scripts that run them pass only their overrides."""

from __future__ import annotations

import json
import os
import shutil
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


@pytest.mark.parametrize("backbone", ["fsrcnn", "carn"])
def test_the_retraining_recipe_is_what_the_script_passed_before(backbone):
    """The settings experiments/retrain_classifier.sh carried as shell defaults, given as overrides of the
    experiment they named, compose to the same config as the recipe."""
    stage_steps, routed_steps, revive = RECIPE_SCHEDULES[backbone]
    before = compose_config([
        f"experiment={backbone}_pcsr", "data=image_folder", *RETRAIN_FILLED, "init.stages=[stage0]", "profile=quick",
        "model=pcsr_routed", "profile.steps.stage=17000", "model.routed_steps=5000",
        "+model.stages.stage_j.module.lr_scale={classifier: 0.3333}", "profile.queries=4096", "optimizer.lr=3e-3",
        "logger=csv", "callbacks=none",
        # chosen later, on a validation split (routed_sweep.sh), for the routed stage
        "model.stages.stage_j_routed.module.skip_hardest=0", "model.stages.stage_j_routed.module.p_power=0.5",
        # and later still: a long stage of U_1 alone, dead units revived (the steps: each backbone's own)
        f"profile.steps.stage={stage_steps}", f"model.routed_steps={routed_steps}",
        f"model.stages.stage_j.module.revive_every={revive}",
        f"model.stages.stage_j_routed.module.revive_every={revive}"],
        "/dummy/run")
    recipe = compose_config([f"experiment=retrain_{backbone}", *RETRAIN_FILLED], "/dummy/run")
    keys = ["data", "backbone", "model", "optimizer", "scheduler", "trainer", "profile", "init", "seed", "name",
            "callbacks"]
    assert resolved(recipe, *keys) == resolved(before, *keys)
    assert recipe.logger.keys() == before.logger.keys()


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


# ------------------------------------------------------------------ the scripts that run the recipes


def script_env(tmp_path: Path) -> tuple[Path, dict]:
    """A copy of experiments/ beside conf/ whose pcsr-train and pcsr record their arguments."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "experiments", repo / "experiments", ignore=shutil.ignore_patterns("*.py", "README.md"))
    (repo / "conf").symlink_to(config_dir())
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("pcsr-train", "pcsr"):  # each call's arguments in calls/<n>.<tool>; pcsr compare's line for grep
        (bin_dir / tool).write_text(f'#!/usr/bin/env bash\nn=$(ls "$PCSR_CALLS" | wc -l)\n'
                                    f'printf "%s\\n" "$@" > "$PCSR_CALLS/$n.{tool}"\necho "vs released"\n')
        (bin_dir / tool).chmod(0o755)
    (repo / "results" / "checkpoints").mkdir(parents=True)
    for name in ("carn-x4", "carn-pcsr-phase1", "fsrcnn-x4", "fsrcnn-pcsr-phase1"):
        (repo / "results" / "checkpoints" / f"{name}.ckpt").write_text("")
    calls = tmp_path / "calls"
    calls.mkdir()
    env = {**os.environ, "PCSR_CALLS": str(calls), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for var in ("STEPS", "ROUTED_STEPS", "QUERIES", "LR", "CLASSIFIER_LR_SCALE", "BACKBONES", "RUNS", "SKIPS"):
        env.pop(var, None)
    return repo, env


def calls(tmp_path: Path) -> list[tuple[str, list[str]]]:
    """(tool, arguments) of each call, in order."""
    found = sorted((tmp_path / "calls").iterdir(), key=lambda p: int(p.name.split(".")[0]))
    return [(p.name.split(".", 1)[1], p.read_text().splitlines()) for p in found]


def train_calls(tmp_path: Path) -> list[list[str]]:
    return [args for tool, args in calls(tmp_path) if tool == "pcsr-train"]


def composed_call(args: list[str]):
    """The config a recorded pcsr-train call composes (hydra.* and resume left out)."""
    return compose_config([a for a in args if not a.startswith(("hydra.", "resume="))], "/dummy/run")


@pytest.mark.parametrize("env_vars, steps, lr_scale", [
    ({}, [("stage0", 6000), ("stage1", 4250), ("stage1_routed", 20000)], {"classifier": 0.3333}),
    ({"ROUTED_STEPS": "0", "CLASSIFIER_LR_SCALE": "1"}, [("stage0", 6000), ("stage1", 4250)], None),
    ({"STEPS": "3000", "ROUTED_STEPS": "14000", "CLASSIFIER_LR_SCALE": "0.5", "QUERIES": "null", "LR": "1e-3"},
     [("stage0", 6000), ("stage1", 3000), ("stage1_routed", 14000)], {"classifier": 0.5}),
])
def test_retrain_classifier_sh_runs_the_recipe_with_its_overrides(tmp_path, env_vars, steps, lr_scale):
    repo, env = script_env(tmp_path)
    for folder in ("train", "val", "report"):
        (tmp_path / folder).mkdir()
    proc = subprocess.run(["bash", str(repo / "experiments" / "retrain_classifier.sh"), str(tmp_path / "train"),
                           str(tmp_path / "val"), str(tmp_path / "report"), "seed=2"], env={**env, **env_vars},
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [args] = train_calls(tmp_path)
    assert not any(str(tmp_path / "report") in a for a in args)  # the report split takes no part in training
    assert args[0] == "experiment=retrain_fsrcnn" and not any(a.startswith(("profile=", "model=")) for a in args)
    assert f"init.checkpoint={repo}/results/checkpoints/fsrcnn-pcsr-phase1.ckpt" in args
    cfg = composed_call(args)
    assert [(name, n) for name, _, n in plan(cfg)] == steps
    assert cfg.seed == 2 and cfg.data.train.path == str(tmp_path / "train")
    assert cfg.optimizer.lr == float(env_vars.get("LR", 3e-3))
    assert cfg.profile.queries == (None if env_vars.get("QUERIES") == "null" else 4096)
    given = cfg.model.stages.stage_j.module.get("lr_scale")
    assert (OmegaConf.to_container(given) if given is not None else None) == lr_scale
    assert [(tool, a[0]) for tool, a in calls(tmp_path)][:4] == [("pcsr-train", args[0]), ("pcsr", "swap"),
                                                                  ("pcsr", "swap"), ("pcsr", "eval")]
    swept = [a[a.index("--hr-dir") + 1] for tool, a in calls(tmp_path) if a[0] == "eval"]
    assert swept == [str(tmp_path / "val")] * 4 + [str(tmp_path / "report")] * 4  # 4 models on each split


def test_retrain_classifier_sh_refuses_a_report_split_that_is_not_its_own(tmp_path):
    repo, env = script_env(tmp_path)
    for folder in ("train", "val"):
        (tmp_path / folder).mkdir()
    proc = subprocess.run(["bash", str(repo / "experiments" / "retrain_classifier.sh"), str(tmp_path / "train"),
                           str(tmp_path / "val"), str(tmp_path / "val")], env=env, capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2 and "REPORT_DIR must be a folder of its own" in proc.stderr
    assert not train_calls(tmp_path)


def test_routed_sweep_sh_trains_the_routed_stage_of_the_recipe(tmp_path):
    repo, env = script_env(tmp_path)
    run = tmp_path / "run"
    (run / "stages" / "stage1").mkdir(parents=True)
    (run / "stages" / "stage1" / "model.ckpt").write_text("")
    (run / "val").mkdir()
    (run / "val" / "released.csv").write_text("")
    (run / "manifest.json").write_text(json.dumps({"experiment": "carn_pcsr", "backbone": "carn"}))
    for folder in ("train", "val"):
        (tmp_path / folder).mkdir()
    proc = subprocess.run(["bash", str(repo / "experiments" / "routed_sweep.sh"), str(tmp_path / "train"),
                           str(tmp_path / "val"), str(run)],
                          env={**env, "SKIPS": "0 0.1", "POWERS": "1 0", "TEACHERS": "0 300", "ROUTED_STEPS": "7"},
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    calls = train_calls(tmp_path)
    assert len(calls) == 8 and all(args[0] == "experiment=retrain_carn" for args in calls)
    settings = []
    for args in calls:
        cfg = composed_call(args)
        assert [(name, n) for name, _, n in plan(cfg)][-1] == ("stage1_routed", 7)
        assert list(cfg.init.stages) == ["stage0", "stage1"] and cfg.init.checkpoint.endswith("stage1/model.ckpt")
        module = cfg.model.stages.stage_j_routed.module
        settings.append((module.skip_hardest, module.p_power, module.teacher_weight, Path(next(
            a for a in args if a.startswith("hydra.run.dir=")).split("=", 1)[1]).name))
    assert settings == [(0, 1, 0, "skip0"), (0.1, 1, 0, "skip0.1"), (0, 0, 0, "skip0_p0"), (0.1, 0, 0, "skip0.1_p0"),
                        (0, 1, 300, "skip0_t300"), (0.1, 1, 300, "skip0.1_t300"), (0, 0, 300, "skip0_p0_t300"),
                        (0.1, 0, 300, "skip0.1_p0_t300")]


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


def test_retrain_budget_sh_runs_the_recipe_on_fewer_photos_and_fewer_steps(tmp_path):
    repo, env = script_env(tmp_path)
    shutil.copy(ROOT / "experiments" / "retrain_budget_report.py", repo / "experiments")
    for folder in ("train", "val", "report"):
        (tmp_path / folder).mkdir()
    names = [f"photo{i}.png" for i in range(9)]
    for name in names:
        (tmp_path / "train" / name).write_bytes(b"not decoded here")
    proc = subprocess.run(["bash", str(repo / "experiments" / "retrain_budget.sh"), str(tmp_path / "train"),
                           str(tmp_path / "val"), str(tmp_path / "report"), "seed=3"],
                          env={**env, "VARIANTS": "photos25 photos50 steps25", "ROUTED_STEPS": "4000"},
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfgs = [composed_call(args) for args in train_calls(tmp_path)]
    assert len(cfgs) == 3 and all(cfg.seed == 3 for cfg in cfgs)
    # every 4th / every 2nd photo in name order, as links; the 25 % subset inside the 50 % one
    subsets = [sorted(p.name for p in Path(cfg.data.train.path).iterdir()) for cfg in cfgs[:2]]
    assert subsets == [names[::4], names[::2]] and set(subsets[0]) <= set(subsets[1])
    assert all(p.is_symlink() for p in Path(cfgs[0].data.train.path).iterdir())
    assert cfgs[2].data.train.path == str(tmp_path / "train")
    steps = [[(name, n) for name, _, n in plan(cfg)][1:] for cfg in cfgs]
    assert steps == [[("stage1", 4250), ("stage1_routed", 4000)]] * 2 + [[("stage1", 1062), ("stage1_routed", 1000)]]
    assert all(cfg.data.val.path == str(tmp_path / "val") for cfg in cfgs)
    assert (repo / "results" / "retrain_budget" / "budget.md").read_text().startswith("| run | backbone |")


def test_retrain_budget_sh_refuses_an_unknown_variant(tmp_path):
    repo, env = script_env(tmp_path)
    for folder in ("train", "val", "report"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        (tmp_path / "train" / f"photo{i}.png").write_bytes(b"x")
    proc = subprocess.run(["bash", str(repo / "experiments" / "retrain_budget.sh"), str(tmp_path / "train"),
                           str(tmp_path / "val"), str(tmp_path / "report")], env={**env, "VARIANTS": "photos10"},
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "unknown variant 'photos10'" in proc.stderr
    assert train_calls(tmp_path) == []


def test_routed_report_sh_sweeps_the_chosen_routed_stage_on_the_report_split_only(tmp_path):
    repo, env = script_env(tmp_path)
    run = tmp_path / "run"
    (run / "routed" / "skip0_p0.5").mkdir(parents=True)
    (run / "report").mkdir()
    (run / "report" / "released.csv").write_text("")
    (run / "manifest.json").write_text(json.dumps({"experiment": "fsrcnn_pcsr", "backbone": "fsrcnn"}))
    (tmp_path / "report").mkdir()
    script = [str(repo / "experiments" / "routed_report.sh"), str(run), "skip0_p0.5", str(tmp_path / "report")]
    proc = subprocess.run(["bash", *script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "run routed_sweep.sh first" in proc.stderr  # no final.ckpt yet
    (run / "routed" / "skip0_p0.5" / "final.ckpt").write_text("")
    proc = subprocess.run(["bash", *script], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = calls(tmp_path)
    assert [a[0] for _, a in made] == ["swap", "eval", "eval", "compare"] and train_calls(tmp_path) == []
    swap = made[0][1]
    assert swap[1].endswith("fsrcnn-pcsr-phase1.ckpt") and swap[2] == str(run / "routed" / "skip0_p0.5" / "final.ckpt")
    assert swap[swap.index("--parts") + 1] == "upsamplers.1"
    assert {a[a.index("--hr-dir") + 1] for _, a in made[1:3]} == {str(tmp_path / "report")}
    assert made[3][1][1] == f"released={run}/report/released.csv"
