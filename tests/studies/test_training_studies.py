"""The retraining studies (retrain, retrain_refit, retrain_budget, routed_sweep, train_photos) end to end on
tiny folders with the smoke profile, the recipe settings they run, and their actions one by one."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from factories import save_tiny, tiny_model
from pcsr_lightning.apps.train_app import run_job
from pcsr_lightning.config import compose_config, config_dir
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.evaluation.compare import worst_gaps_both_ways
from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.io.images import write_png
from pcsr_lightning.io.runs import JobResult, write_result
from pcsr_lightning.io.weights import load_model
from pcsr_lightning.studies.context import Context
from pcsr_lightning.studies.driver import study_plan
from pcsr_lightning.studies.plan import ACTION_NAMES, StudyError, plan_of
from pcsr_lightning.studies.select import choose
from pcsr_lightning.studies.training_studies import (
    active_shares,
    compare,
    curve_gaps,
    light_fit,
    link_photos,
    oracle_curves,
    photos_within,
    pixel_errors,
    psnr_at,
    psnr_of,
    subset_of,
    swap,
)

ROOT = Path(__file__).resolve().parents[2]
# the smoke profile for the retraining recipe (whose own values win over a profile's): a step or two a stage
SMOKE_TRAIN = ["profile=smoke", "profile.steps.stage=1", "model.routed_steps=1", "profile.batch_size=2",
               "profile.queries=64", "profile.val_every=100", "logger=none"]


def composed(name: str, overrides=()):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="study", overrides=[f"study={name}", *overrides], return_hydra_config=True)


def train_overrides(cfg, step: str, point: dict) -> list[str]:
    """The pcsr-train overrides a study's train step gives for one job's settings (lists spliced in)."""
    node = cfg.copy()
    OmegaConf.set_struct(node, False)
    node.study.point = point
    given = OmegaConf.to_container(node.study.steps[step].args.overrides, resolve=True)
    return [str(o) for item in given for o in (item if isinstance(item, list) else [item])]


# ------------------------------------------------------------------ the recipe settings the studies run


@pytest.mark.parametrize("backbone", ["fsrcnn", "carn"])
def test_the_retrain_study_trains_the_recipe_and_nothing_beside_it(backbone):
    """What experiments/retrain_classifier.sh passed to pcsr-train (the recipe, the released model's stage 0,
    a seed) is what the study passes: the recipe's settings, not the study's, decide the run."""
    cfg = composed("retrain", ["release=/rel"])
    given = train_overrides(cfg, "train", {"family": backbone, "released": "/rel/x.ckpt", "seed": 2})
    assert given == [f"experiment=retrain_{backbone}", "init.checkpoint='/rel/x.ckpt'", "seed=2"]
    filled = ["data=image_folder", "data.train.path=/t", "data.val.path=/v"]
    study_run = compose_config([*given, *filled], "/dummy/run")
    recipe = compose_config([f"experiment=retrain_{backbone}", *filled, "init.checkpoint=/rel/x.ckpt", "seed=2"],
                            "/dummy/run")
    assert OmegaConf.to_container(study_run, resolve=True) == OmegaConf.to_container(recipe, resolve=True)
    assert list(study_run.init.stages) == ["stage0"] and study_run.model.routed_steps > 0
    assert OmegaConf.to_container(cfg.retrain_ks) == [-0.5, -0.25, 0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4,
                                                      0.5, 0.6, 0.75, 1, 1.5, 2]


@pytest.mark.parametrize("backbone, steps", [("fsrcnn", (4250, 20000, 250)), ("carn", (4500, 10000, 250))])
def test_the_retrain_studys_run_is_what_the_shell_once_passed(backbone, steps):
    """The settings experiments/retrain_classifier.sh once carried as shell defaults (then the choices made
    on a validation split: the routed stage's pixel weights, its length, revival), given as overrides of the
    experiment they named, compose to the config the retrain study trains."""
    stage_steps, routed_steps, revive = steps
    filled = ["data=image_folder", "data.train.path=/t", "data.val.path=/v"]
    before = compose_config([
        f"experiment={backbone}_pcsr", *filled, "init.checkpoint=/rel/x.ckpt", "init.stages=[stage0]", "profile=quick",
        "model=pcsr_routed", "profile.steps.stage=17000", "model.routed_steps=5000",
        "+model.stages.stage_j.module.lr_scale={classifier: 0.3333}", "profile.queries=4096", "optimizer.lr=3e-3",
        "logger=csv", "callbacks=none",
        "model.stages.stage_j_routed.module.skip_hardest=0", "model.stages.stage_j_routed.module.p_power=0.5",
        f"profile.steps.stage={stage_steps}", f"model.routed_steps={routed_steps}",
        f"model.stages.stage_j.module.revive_every={revive}",
        f"model.stages.stage_j_routed.module.revive_every={revive}"], "/dummy/run")
    cfg = composed("retrain", ["release=/rel"])
    given = train_overrides(cfg, "train", {"family": backbone, "released": "/rel/x.ckpt", "seed": 0})
    study_run = compose_config([*given, *filled], "/dummy/run")
    keys = ["data", "backbone", "model", "optimizer", "scheduler", "trainer", "profile", "init", "seed", "name",
            "callbacks"]
    assert ({k: OmegaConf.to_container(study_run[k], resolve=True) if OmegaConf.is_config(study_run[k])
             else study_run[k] for k in keys} ==
            {k: OmegaConf.to_container(before[k], resolve=True) if OmegaConf.is_config(before[k]) else before[k]
             for k in keys})
    assert study_run.logger.keys() == before.logger.keys()


def test_the_budget_studys_full_run_is_the_recipe_and_its_steps_runs_fractions_of_it():
    cfg = composed("retrain_budget", ["release=/rel"])
    recipe = compose_config(["experiment=retrain_fsrcnn", "data.train.path=-", "data.val.path=-",
                             "init.checkpoint=-"], "/dummy/run")
    budgets = OmegaConf.to_container(cfg.budgets, resolve=True)
    assert budgets["full"] == {"fraction": 1, "stage_steps": recipe.profile.steps.stage,
                               "routed_steps": recipe.model.routed_steps}
    for percent in (25, 50):
        assert budgets[f"steps{percent}"] == {"fraction": 1, "stage_steps": recipe.profile.steps.stage * percent // 100,
                                              "routed_steps": recipe.model.routed_steps * percent // 100}
        assert budgets[f"photos{percent}"] == {**budgets["full"], "fraction": percent / 100}


def test_the_routed_sweep_trains_u1_alone_from_its_own_stage_1():
    cfg = composed("routed_sweep", ["release=/rel"])
    first = train_overrides(cfg, "stage1", {"family": "carn", "released": "/r.ckpt"})
    assert first[:2] == ["experiment=retrain_carn", "init.checkpoint='/r.ckpt'"]
    assert "model.stages.stage_j_routed=null" in first
    point = {"family": "carn", "released": "/r.ckpt", "stage1": "/s1.ckpt", "skip_hardest": 0.1, "p_power": 0.5,
             "teacher_weight": 300}
    routed = compose_config([*train_overrides(cfg, "routed", point), "data=image_folder", "data.train.path=/t",
                             "data.val.path=/v"], "/dummy/run")
    module = routed.model.stages.stage_j_routed.module
    assert (module.skip_hardest, module.p_power, module.teacher_weight) == (0.1, 0.5, 300)
    assert list(routed.init.stages) == ["stage0", "stage1"] and routed.init.checkpoint == "/s1.ckpt"


# ------------------------------------------------------------------ roles


def test_a_training_step_may_read_train_and_val_but_never_report():
    ok = plan_of({"name": "s", "steps": {"t": {"action": "train", "roles": ["train", "val"]}}}, {}, ACTION_NAMES)
    assert ok.steps[0].roles == ("train", "val") and ok.steps[0].role == "train"
    for roles in (["train", "report"], ["report"]):
        with pytest.raises(StudyError, match="reads the report photos"):
            plan_of({"name": "s", "steps": {"t": {"action": "train", "roles": roles}}}, {}, ACTION_NAMES)
    with pytest.raises(StudyError, match="role or roles, not both"):
        plan_of({"name": "s", "steps": {"t": {"action": "train", "role": "train", "roles": ["val"]}}}, {}, ACTION_NAMES)


def test_a_selection_on_a_step_that_also_trained_is_refused():
    study = {"name": "s", "steps": {"t": {"action": "train", "roles": ["train", "val"]},
                                    "pick": {"select": {"from": "t", "choose": "seed"}}}}
    with pytest.raises(StudyError, match="train\\+val; a setting may be chosen on the val photos only"):
        plan_of(study, {}, ACTION_NAMES)


def test_the_refit_study_trains_on_train_and_val_and_sweeps_only_the_report_photos():
    plan = study_plan(composed("retrain_refit", ["release=/rel"]))
    assert plan.step("train").roles == ("train", "val")
    swept = {s.name: s.roles for s in plan.steps if s.action in ("eval", "compare")}
    assert swept and all(roles == ("report",) for roles in swept.values())
    assert not any(s.select for s in plan.steps)


def test_link_photos_links_every_image_and_refuses_two_of_one_name(tmp_path):
    for folder, names in {"train": ["a.png", "b.JPG", "notes.txt"], "val": ["c.png"]}.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"x")
    dest = tmp_path / "photos"
    dest.mkdir()
    (dest / "stale.png").symlink_to(tmp_path / "val" / "c.png")  # an earlier, interrupted job's: emptied first
    link_photos(dest, [tmp_path / "train", tmp_path / "val"])
    assert sorted(p.name for p in dest.iterdir()) == ["a.png", "b.JPG", "c.png"]
    assert all(p.is_symlink() for p in dest.iterdir()) and (dest / "c.png").resolve() == tmp_path / "val" / "c.png"
    (tmp_path / "val" / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="two images named a.png"):
        link_photos(dest, [tmp_path / "train", tmp_path / "val"])
    link_photos(dest, [tmp_path / "train"])
    with pytest.raises(ValueError, match="not a photo of the step's role folder"):
        photos_within(dest, [tmp_path / "val"])
    assert len(photos_within(dest, [tmp_path / "train"])) == 2


def test_subsets_are_nested_and_fixed():
    photos = [Path(f"p{i:02d}.png") for i in range(30)]
    quarter, half = subset_of(photos, fraction=0.25), subset_of(photos, fraction=0.5)
    assert quarter == photos[::4] and len(quarter) == 8 and len(half) == 15 and set(quarter) <= set(half)
    assert subset_of(photos, fraction=1) == photos
    drawn = [subset_of(photos, count=n, seed=3) for n in (5, 10)]
    assert len(drawn[0]) == 5 and set(drawn[0]) <= set(drawn[1]) and drawn[0] == subset_of(photos, count=5, seed=3)
    assert subset_of(photos, count=5, seed=4) != drawn[0]
    for bad in ({"fraction": 0}, {"count": 31}, {}, {"fraction": 0.5, "count": 3}):
        with pytest.raises(ValueError, match="subset"):
            subset_of(photos, **bad)


def test_choose_takes_a_whole_grid_point_by_the_best_row():
    rows = [{"skip_hardest": 0.0, "p_power": 1.0, "worst_gap": -0.2},
            {"skip_hardest": 0.1, "p_power": 0.5, "worst_gap": -0.1}]
    results = [JobResult("c/family=carn", {"family": "carn"}, rows)]
    picks = choose({"from": "c", "choose": ["skip_hardest", "p_power"], "rule": "best", "metric": "worst_gap",
                    "by": ["family"]}, results)
    assert picks == [{"family": "carn", "skip_hardest": 0.1, "p_power": 0.5}]
    with pytest.raises(ValueError, match="only the rule best"):
        choose({"from": "c", "choose": ["skip_hardest", "p_power"], "rule": "largest_within"}, results)


# ------------------------------------------------------------------ the actions


def summary(points):
    return [{"model": "pcsr", "setting": s, "k": k, "psnr": p, "gflops_paper": g, "heavy_share": h}
            for s, k, g, p, h in points]


def curve(light: float, k0: float, heavy: float = 32.0, k0_share: float = 0.5) -> list[dict]:
    """A curve of three points at 1, 2 and 3 GFLOPs: all-light, k = 0, all-heavy (PSNRs as given)."""
    return summary([("all-light", None, 1.0, light, 0.0), ("k", 0.0, 2.0, k0, k0_share),
                    ("all-heavy", None, 3.0, heavy, 1.0)])


RELEASED = curve(30.0, 31.0)


def test_curve_gaps_are_pcsr_compares_worst_gap_and_the_ends():
    other = curve(29.75, 30.9, k0_share=0.4)
    gaps = curve_gaps(RELEASED, other)
    ref = [(r["gflops_paper"], r["psnr"]) for r in RELEASED]
    both_ways = worst_gaps_both_ways(ref, [(1.0, 29.75), (2.0, 30.9), (3.0, 32.0)])
    assert gaps["worst_gap"] == pytest.approx(both_ways["either"])
    assert gaps["worst_gap"] == pytest.approx(-0.25) and gaps["worst_heavy_share"] == 0.0
    assert gaps["all_light_gap"] == pytest.approx(-0.25) and gaps["all_heavy_gap"] == pytest.approx(0.0)


def test_compare_reads_the_jobs_that_agree_with_its_own_settings(tmp_path):
    study = tmp_path / "study"
    for family, drop in (("carn", 0.1), ("fsrcnn", 0.5)):
        for variant, rows in (("released", RELEASED), ("retrained", curve(30.0 - drop, 31.0))):
            folder = f"val/family={family},variant={variant}"
            write_result(study / folder, JobResult(folder, {"family": family, "variant": variant}, rows))
    ctx = Context(None, tmp_path / "out", study, point={"family": "fsrcnn"})
    outcome = compare(ctx, steps=["val"], reference={"variant": "released"}, curves=["variant"])
    assert outcome.rows == [pytest.approx({"variant": "retrained", **curve_gaps(RELEASED, curve(29.5, 31.0))})]
    assert outcome.rows[0]["worst_gap"] == pytest.approx(-0.5)
    assert (tmp_path / "out" / "compare.md").is_file() and (tmp_path / "out" / "curves.png").is_file()
    with pytest.raises(ValueError, match="no reference rows"):
        compare(ctx, steps=["val"], reference={"variant": "nothing"}, curves=["variant"])


def test_swap_takes_the_named_parts_from_the_donor(tmp_path):
    save_tiny(tmp_path / "base.ckpt")
    donor = tiny_model(seed=1)
    save_tiny(tmp_path / "donor.ckpt", seed=1)
    outcome = swap(Context(None, tmp_path, tmp_path), str(tmp_path / "base.ckpt"), str(tmp_path / "donor.ckpt"),
                   {"c_only": ["classifier"]})
    made = load_model(outcome.values["c_only"]).model
    base = load_model(tmp_path / "base.ckpt").model
    for key, value in made.state_dict().items():
        source = donor if key.startswith("classifier.") else base
        assert torch.equal(value, source.state_dict()[key]), key


def random_photos(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        write_png(torch.rand(3, 136, 160, generator=gen), folder / f"p{i}.png")
    return folder


def test_upsampler_fit_measures_u1_alone_and_finds_dead_units(tmp_path):
    pairs = [load_pair(p, 4, None, "paper") for p in sorted(random_photos(tmp_path / "photos").iterdir())]
    net = tiny_model()
    l1, mse = light_fit(net, pairs)
    assert 0 < l1 < 255 and l1 * l1 <= mse + 1e-6  # mean |e| squared never exceeds mean e^2
    hidden = [m.out_features for m in net.upsamplers[1].linears[:-1]]
    assert [len(s) for s in active_shares(net, pairs, side=8)] == hidden
    with torch.no_grad():  # unit 0 of the first hidden layer never positive: dead
        net.upsamplers[1].linears[0].weight[0] = 0.0
        net.upsamplers[1].linears[0].bias[0] = -1.0
    assert active_shares(net, pairs, side=8)[0][0] == 0.0


def test_routing_oracle_is_never_beaten_and_meets_the_ends(tmp_path):
    assert psnr_at(torch.tensor([4.0, 2.0]), torch.tensor([3.0, 1.0]), 0.5) == psnr_of((6.0 - 3.0) / 2)
    pairs = [load_pair(p, 4, None, "paper") for p in sorted(random_photos(tmp_path / "photos").iterdir())]
    net = tiny_model()
    shares = [0.0, 0.1, 0.5, 1.0]
    by_classifier, by_oracle, one_threshold = oracle_curves(net, pairs, shares)
    errors = [pixel_errors(net, hr, lr) for hr, lr in pairs]
    ends = [sum(psnr_of(float(e.mean())) for e in es) / 2 for es in ([e1 for _, _, e1 in errors],
                                                                   [e0 for _, e0, _ in errors])]
    for row in (by_classifier, by_oracle, one_threshold):  # nothing sent: U_1 alone; everything: U_0 alone
        assert row[0] == pytest.approx(ends[0]) and row[-1] == pytest.approx(ends[1])
    assert all(o >= c - 1e-9 for o, c in zip(by_oracle, by_classifier))
    everything = torch.cat([p0 for p0, _, _ in errors])  # one threshold, by masks instead of sorted sums
    threshold = torch.topk(everything, round(0.1 * everything.numel())).values[-1]
    by_masks = sum(psnr_of(float(torch.where(p0 >= threshold, e0, e1).mean())) for p0, e0, e1 in errors) / 2
    assert one_threshold[1] == pytest.approx(by_masks)


# ------------------------------------------------------------------ end to end on tiny folders


def _study(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "pcsr_lightning.apps.launch", "pcsr-study", *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Train (3 photos), val and report (1 each) folders and a smoke-trained FSRCNN-PCSR as the release."""
    root = tmp_path_factory.mktemp("pool")
    for role, names in {"train": ["chelsea", "coffee", "astronaut"], "val": ["rocket"], "report": ["camera"]}.items():
        (root / role).mkdir()
        for name in names:
            write_png(sample_photo(name)[:, :160, :192], root / role / f"{name}.png")
    run_job(compose_config(["experiment=fsrcnn_pcsr", "profile=smoke", "logger=none", "callbacks=none",
                            "profile.steps.stage0=1", "profile.steps.stage=1", "profile.val_every=100"], root / "rel"))
    return root


def listed(key: str, overrides: list[str]) -> str:
    """A list of pcsr-train overrides as one pcsr-study override (each quoted: it holds '=')."""
    return f"{key}=[{','.join(repr(o) for o in overrides)}]"


def study_args(name: str, *more: str) -> list[str]:
    return [f"study={name}", "photos.train=train", "photos.val=val", "photos.report=report",
            "models.fsrcnn=rel/final.ckpt", listed("train_overrides", SMOKE_TRAIN), "retrain_ks=[0,1]", *more]


def rows_of(root: Path) -> list[dict]:
    with open(root / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_retrain_study_runs_end_to_end(pool):
    run = _study(pool, *study_args("retrain"))
    assert run.returncode == 0, run.stderr[-3000:]
    root = pool / "outputs" / "studies" / "retrain"
    manifest = json.loads((root / "train" / "family=fsrcnn,seed=0" / "run" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["stage0", "stage1", "stage1_routed"]
    compared = json.loads((root / "compare_report" / "family=fsrcnn,seed=0" / "result.json").read_text())["rows"]
    assert sorted(r["variant"] for r in compared) == ["retrained", "retrained_C_only", "retrained_U1_only"]
    assert all(isinstance(r["worst_gap"], float) for r in compared)
    swept = {r["job"] for r in rows_of(root) if r["job"].startswith(("val/", "report_sweep/"))}
    assert len(swept) == 8  # four models on each of the two splits
    report = (root / "report" / "report.md").read_text()
    assert "report photos: gap to the released curve" in report and "retrained_U1_only" in report
    assert (root / "compare_report" / "family=fsrcnn,seed=0" / "curves.png").is_file()


def test_the_refit_study_trains_on_the_train_and_val_photos_together(pool):
    run = _study(pool, *study_args("retrain_refit", "variants=[released,retrained]"))
    assert run.returncode == 0, run.stderr[-3000:]
    refit = pool / "outputs" / "studies" / "retrain_refit" / "train" / "family=fsrcnn,seed=0"
    assert sorted(p.name for p in (refit / "photos").iterdir()) == ["astronaut.png", "chelsea.png", "coffee.png",
                                                                     "rocket.png"]
    assert [r["photos"] for r in rows_of(refit.parents[1]) if r["job"].startswith("train/")][-1] == "4"
    assert {r["job"].split("/")[0] for r in rows_of(refit.parents[1])} == {
        "models", "train", "swapped", "report_sweep", "compare_report", "report"}


def test_the_budget_study_trains_on_the_subset_its_config_names(pool):
    run = _study(pool, *study_args("retrain_budget", "budget_runs=[photos50]", "variants=[released,retrained]"))
    assert run.returncode == 0, run.stderr[-3000:]
    root = pool / "outputs" / "studies" / "retrain_budget"
    subset = root / "subsets" / "budget=photos50" / "photos"
    assert sorted(p.name for p in subset.iterdir()) == ["astronaut.png", "coffee.png"]  # every 2nd in name order
    manifest = json.loads((root / "train" / "budget=photos50,family=fsrcnn" / "run" / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["stage0", "stage1", "stage1_routed"]
    assert "| photos50 | 2 | fsrcnn | retrained |" in (root / "report" / "report.md").read_text()


def test_the_routed_sweep_picks_on_val_and_reports_the_pick(pool):
    run = _study(pool, *study_args("routed_sweep", "skip_hardest=[0,0.1]", "p_powers=[1]", "teacher_weights=[0]"))
    assert run.returncode == 0, run.stderr[-3000:]
    root = pool / "outputs" / "studies" / "routed_sweep"
    [pick] = json.loads((root / "pick" / "result.json").read_text())["rows"]
    val = json.loads((root / "compare_val" / "family=fsrcnn" / "result.json").read_text())["rows"]
    best = max(val, key=lambda r: r["worst_gap"])
    assert (pick["skip_hardest"], pick["p_power"]) == (best["skip_hardest"], best["p_power"])
    reported = [r["job"] for r in rows_of(root) if r["job"].startswith("report_sweep/")]
    assert reported and all(f"skip_hardest={pick['skip_hardest']:g}" in j for j in reported if "routed" in j)


def test_the_train_photos_study_trains_both_networks_with_one_budget(pool):
    run = _study(pool, "study=train_photos", "photos.train=train", "photos.val=val", "photos.report=report",
                 listed("train_overrides", ["profile=smoke", "logger=none", "callbacks=none", "profile.val_every=100"]))
    assert run.returncode == 0, run.stderr[-3000:]
    root = pool / "outputs" / "studies" / "train_photos"
    settings = {r["setting"] for r in rows_of(root) if r["job"].startswith("report_sweep/")}
    assert {"original", "bicubic", "all-light", "all-heavy", "k"} <= settings


def test_a_retrain_study_reporting_on_its_train_folder_exits_2_and_leaves_nothing(pool):
    args = [a if a != "photos.report=report" else "photos.report=train" for a in study_args("retrain")]
    run = _study(pool, *args, "paths.log_dir=refused")
    assert run.returncode == 2 and "is also the train folder" in run.stderr
    assert not (pool / "refused").exists()
