"""Training: losses, frozen stages, configs, the staged pipeline with resume, train-then-eval, multirun."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from factories import pcsr_net
from pcsr_lightning.apps.cli import main as pcsr_main
from pcsr_lightning.apps.train_app import run_job
from pcsr_lightning.config import compose_config, extended_widths, upsampler_widths
from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.io.checkpoint import build_model, load_checkpoint, read_weights_only
from pcsr_lightning.io.manifest import Manifest
from pcsr_lightning.models.sampler import query_inputs
from pcsr_lightning.training.losses import average_loss, classifier_stage_loss, routing_loss, weighted_l1_loss
from pcsr_lightning.training.pipeline import stage_config, stage_plan
from pcsr_lightning.training.stages import BackboneStage, RoutedUpsamplerStage, RouterStage, UpsamplerStage, queries_of

SMOKE = ["profile=smoke", "logger=none", "callbacks=none"]
BIN = Path(sys.executable).parent


# ------------------------------------------------------------------ losses


def test_average_loss_by_hand():
    # N = 4 pixels, M = 2: column sums 3.0 and 1.0, target 2 -> (|3-2| + |1-2|) / 2 / 2 = 0.5
    p = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    assert average_loss(p).item() == pytest.approx(0.5)
    assert average_loss(torch.full((3, 5, 2), 0.5)).item() == pytest.approx(0.0)
    # M = 3, all mass on one class over N = 6: sums (6, 0, 0), target 2 -> (2 + 1 + 1) / 3
    one = torch.zeros(2, 3, 3)
    one[..., 0] = 1
    assert average_loss(one).item() == pytest.approx(4 / 3)


def test_classifier_stage_loss_by_hand():
    pred = torch.zeros(1, 2, 3)
    target = torch.full((1, 2, 3), 0.1)
    probs = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # L_avg = (|2-1| + |0-1|) / 1 / 2 = 1
    out = classifier_stage_loss(pred, target, probs, 1000.0, 3.0)
    assert out["l1"].item() == pytest.approx(0.1)
    assert out["average"].item() == pytest.approx(1.0)
    assert out["loss"].item() == pytest.approx(1000 * 0.1 + 3 * 1.0)


def test_weighted_l1_by_hand():
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]]])
    assert weighted_l1_loss(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)
    assert weighted_l1_loss(pred, target, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(2.0)
    assert weighted_l1_loss(pred, target, torch.tensor([[1.0, 3.0]])).item() == pytest.approx(2.5)  # (1 + 9) / 4
    weight = torch.tensor([[0.5, 0.5]], requires_grad=True)
    weighted_l1_loss(pred.requires_grad_(), target, weight).backward()
    assert weight.grad is None  # the weights are the frozen classifier's: no gradient reaches them



def test_routing_loss_by_hand():
    # 4 pixels, heavy_share 0.25: the 3rd smallest gain (1.0) is the threshold, the pixel above it is heavy
    gain = torch.tensor([[0.0, 4.0, 1.0, -2.0]])
    score = torch.tensor([[0.0, 2.0, -1.0, 0.5]], requires_grad=True)
    weight = torch.tensor([1.0, 3.0, 0.0, 3.0])  # |gain - 1|
    label = torch.tensor([0.0, 1.0, 0.0, 0.0])
    bce = -(label * torch.log(torch.sigmoid(score[0])) + (1 - label) * torch.log(1 - torch.sigmoid(score[0])))
    by_hand = (weight * bce).sum() / weight.sum()
    assert routing_loss(score, gain, 0.25).item() == pytest.approx(by_hand.item(), rel=1e-6)
    gain.requires_grad_()
    routing_loss(score, gain, 0.25).backward()
    assert gain.grad is None and score.grad is not None  # the gains are the frozen upsamplers': no gradient
    # a score that agrees with the labels costs less than one that disagrees
    assert routing_loss(torch.tensor([-5.0, 5.0, -5.0, -5.0]), gain.detach(), 0.25) < \
        routing_loss(torch.tensor([5.0, -5.0, 5.0, 5.0]), gain.detach(), 0.25)


# ------------------------------------------------------------------ stages


tiny_pcsr = partial(pcsr_net, classifier_hidden=[4], rgb_mean=(0.4, 0.4, 0.4))  # CARN(nf=8), train mode


def fake_batch(b=2, q=32) -> dict:
    hr = torch.rand(b, 3, 16, 16)
    return {"lr": torch.rand(b, 3, 4, 4), "hr": hr, "idx": torch.stack([torch.randperm(256)[:q] for _ in range(b)])}


def adam():
    return lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.99))


def queries_by_hand(net, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch's query inputs, their bilinear base (tiny_pcsr's rgb_mean of 0.4 added back) and target
    colours, computed from the network's parts, apart from the stage under test."""
    coord, cell, target = queries_of(batch)
    lr_norm = net.normalize(batch["lr"])
    return query_inputs(net.encode(lr_norm), coord, cell), net.bilinear_base(lr_norm, coord) + 0.4, target

def configured_stage(net, name: str, overrides=()):
    """The stage as the default pipeline in conf/model/ builds it."""
    plans = {p.name: p for p in stage_plan(compose_config(list(overrides)), net)}
    return plans[name].module(net, adam(), name=name)


def test_upsampler_stage_freezes_everything_trained_before():
    net = tiny_pcsr()
    stage = configured_stage(net, "stage1")
    assert isinstance(stage, UpsamplerStage) and (stage.l1_weight, stage.average_weight) == (1000.0, 3.0)
    optimizer = stage.configure_optimizers()
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    expected = {id(p) for m in (net.upsamplers[1], net.classifier) for p in m.parameters()}
    assert in_optimizer == expected
    assert stage.trainable_names() == ["upsamplers.1", "classifier"]
    frozen = {k: v.clone() for k, v in net.state_dict().items()
              if k.startswith(("backbone.", "upsamplers.0."))}
    trained = {k: v.clone() for k, v in net.state_dict().items() if k.startswith(("upsamplers.1.", "classifier."))}
    stage.train()  # Lightning does this: frozen parts must stay in eval mode (CARN's BatchNorm)
    assert not net.backbone.training and not net.upsamplers[0].training
    assert net.upsamplers[1].training and net.classifier.training
    for _ in range(3):
        loss = stage.training_step(fake_batch(), 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = net.state_dict()
    for k, v in frozen.items():  # weights and BatchNorm running statistics
        assert torch.equal(after[k], v), k
    assert any(not torch.equal(after[k], v) for k, v in trained.items())
    assert all(not p.requires_grad for p in net.backbone.parameters())


def test_backbone_stage_trains_backbone_and_heaviest_upsampler_only():
    net = tiny_pcsr()
    stage = configured_stage(net, "stage0")
    assert isinstance(stage, BackboneStage) and stage.frozen_names() == ["upsamplers.1", "classifier"]
    optimizer = stage.configure_optimizers()
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for m in (net.backbone, net.upsamplers[0]) for p in m.parameters()}
    light = {k: v.clone() for k, v in net.state_dict().items() if k.startswith(("upsamplers.1.", "classifier."))}
    loss = stage.training_step(fake_batch(), 0)
    loss.backward()
    optimizer.step()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in light.items())
    assert stage.parameter_counts()["params_trainable"] == sum(p.numel() for p in optimizer.param_groups[0]["params"])


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("experiment, params", [
    ("fsrcnn_original", 24_515), ("fsrcnn_pcsr", 24_502), ("carn_original", 294_915), ("carn_pcsr", 168_970),
])
def test_experiments_build_the_papers_networks(experiment, params, tmp_path):
    cfg = compose_config([f"experiment={experiment}"], tmp_path)
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    assert sum(p.numel() for p in net.parameters()) == params
    assert cfg.name == experiment
    assert cfg.optimizer.lr == (1e-3 if experiment.startswith("fsrcnn") else 2e-4)


def test_srresnet_and_m3_configs_compose(tmp_path):
    cfg = compose_config(["experiment=srresnet_pcsr", "model.num_classes=3"], tmp_path)
    widths = OmegaConf.to_container(cfg.model.net, resolve=True)["upsampler_hidden"]
    assert widths == [[170] * 4, [82] * 4, [40] * 3]
    assert upsampler_widths([58] * 4, [10] * 3, 2) == [[58] * 4, [10] * 3]
    with pytest.raises(ValueError, match="num_classes"):
        upsampler_widths([8], [4], 0)


def test_extended_widths_continue_the_ladder_below_the_source():
    carn = [[74] * 4, [20] * 3]
    assert extended_widths(carn, [74] * 4, [20] * 3, 2) == carn  # nothing to add
    assert extended_widths(carn, [74] * 4, [20] * 3, 3) == [*carn, [10] * 3]  # 20 * (20/74)^(1/2) = 10.4
    assert extended_widths(carn, [74] * 4, [20] * 3, 4) == [*carn, [13] * 3, [8] * 3]  # step (20/74)^(1/3)
    assert extended_widths([[8], [2]], [8], [2], 5)[-1] == [1]  # never 0 wide


# ------------------------------------------------------------------ pipeline


class Interrupt(L.Callback):
    """Simulates a killed job: raises once ``stage`` reaches ``step``."""

    def __init__(self, stage: str, step: int):
        self.stage, self.step = stage, step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.stage_name == self.stage and trainer.global_step >= self.step:
            raise RuntimeError("simulated interruption")


class FirstStep(L.Callback):
    def __init__(self):
        self.seen: dict[str, int] = {}

    def on_train_start(self, trainer, module):
        self.seen[module.stage_name] = trainer.global_step


def test_resume_continues_an_interrupted_pipeline(tmp_path):
    cfg = compose_config([*SMOKE, "profile.steps.stage=4"], tmp_path / "run")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run_job(cfg, callbacks=[Interrupt("stage1", 2)])
    manifest = Manifest.load(tmp_path / "run")
    assert [(s.name, s.status) for s in manifest.stages] == [("stage0", "done"), ("stage1", "running")]
    assert manifest.final_checkpoint is None
    stage0 = Path(manifest.stages[0].checkpoint)
    stamp = stage0.stat().st_mtime_ns

    with pytest.raises(ValueError, match="resume=true"):
        run_job(cfg)  # the folder holds a run: refuse to start over silently

    cfg.resume = True
    seen = FirstStep()
    manifest = run_job(cfg, callbacks=[seen])
    assert seen.seen == {"stage1": 2}  # stage 0 not redone, stage 1 continued from step 2
    assert stage0.stat().st_mtime_ns == stamp
    assert [(s.name, s.status) for s in manifest.stages] == [("stage0", "done"), ("stage1", "done")]
    assert manifest.stages[1].metrics["steps"] == 4
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert on_disk["final_checkpoint"] == str((tmp_path / "run" / "final.ckpt").resolve())
    assert load_checkpoint(on_disk["final_checkpoint"]).is_pcsr


def test_train_then_eval_round_trip(tmp_path, capsys):
    cfg = compose_config([*SMOKE, "logger=csv", "experiment=carn_pcsr"], tmp_path / "run")
    manifest = run_job(cfg)
    assert manifest.kind == "pcsr" and manifest.backbone == "carn"
    stage1 = manifest.stage("stage1")
    assert {"val_psnr_heavy", "val_psnr_k0", "val_heavy_share_k0", "params_trainable", "params_frozen"} <= set(
        stage1.metrics)
    assert stage1.config["trainable"] == ["upsamplers.1", "classifier"]
    csv_text = next((tmp_path / "run" / "csv").rglob("metrics.csv")).read_text()
    assert "stage1/val_psnr_k0" in csv_text and "stage0/params_trainable" in csv_text
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    from PIL import Image

    from conftest import sample_photo

    img = (sample_photo("chelsea")[:, :64, :80] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).save(hr_dir / "cat.png")
    out = tmp_path / "eval.csv"
    assert pcsr_main(["eval", "--ckpt", manifest.final_checkpoint, "--hr-dir", str(hr_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {"image", "psnr", "heavy_share", "gflops_paper"} <= set(rows[0]) and rows[-1]["image"] == "mean"
    assert pcsr_main(["upscale", "--ckpt", manifest.final_checkpoint, "--input", str(hr_dir),
                      "--output", str(tmp_path / "sr")]) == 0
    assert (tmp_path / "sr" / "cat.png").is_file()


def test_original_pipeline_loads_in_eval(tmp_path):
    cfg = compose_config([*SMOKE, "experiment=fsrcnn_original"], tmp_path / "run")
    manifest = run_job(cfg)
    assert [s.name for s in manifest.stages] == ["original"]
    assert "val_psnr" in manifest.stages[0].metrics
    loaded = load_checkpoint(manifest.final_checkpoint)
    assert loaded.kind == "original" and loaded.model.scale == 4


def test_impossible_configs_fail_clearly(tmp_path):
    (tmp_path / "val").mkdir()  # beside the run folder: a run folder inside a folder read is refused
    cfg = compose_config([*SMOKE, "data=image_folder", f"data.train.path={tmp_path / 'nope'}",
                          f"data.val.path={tmp_path / 'val'}"], tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        run_job(cfg)
    cfg = compose_config([*SMOKE, "data.queries=100000"], tmp_path / "run2")
    with pytest.raises(ValueError, match="queries must be"):
        run_job(cfg)


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    proc = subprocess.run(
        [str(BIN / "pcsr-train"), "profile=smoke", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
         "logger=csv", "callbacks=none", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [s["status"] for s in data["stages"]] == ["done", "done"]
    assert load_checkpoint(data["final_checkpoint"]).is_pcsr


# ------------------------------------------------------------------ seeds, precision, checkpoints, steps


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_weights_only(run_dir / "final.ckpt")["state_dict"]


def test_one_seed_gives_one_run_and_another_seed_another(tmp_path):
    tiny = [*SMOKE, "trainer.deterministic=true", "profile.steps.stage0=2", "profile.steps.stage=2",
            "profile.val_every=100"]
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run_job(compose_config([*tiny, f"seed={seed}"], tmp_path / name))
        runs[name] = final_weights(tmp_path / name)
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not torch.equal(runs["a"]["backbone.head_conv.0.weight"], runs["c"]["backbone.head_conv.0.weight"])
    assert not torch.equal(runs["a"]["upsamplers.1.layers.0.weight"], runs["c"]["upsamplers.1.layers.0.weight"])


@pytest.mark.parametrize("model, stages", [("pcsr", ["stage0", "stage1"]),
                                           ("pcsr_routed", ["stage0", "stage1", "stage1_routed"])])
def test_bf16_mixed_trains_validates_and_keeps_the_best_checkpoint(tmp_path, model, stages):
    cfg = compose_config([*SMOKE, "trainer.precision=bf16-mixed", f"model={model}"], tmp_path / "run")
    manifest = run_job(cfg)
    assert [s.name for s in manifest.stages] == stages
    for stage in stages:
        monitor = f"{stage}/val_psnr_heavy" if stage == "stage0" else f"{stage}/val_psnr_k0"
        metrics = manifest.stage(stage).metrics
        assert all(math.isfinite(v) for v in metrics.values())
        folder = tmp_path / "run" / "stages" / stage / "lightning"
        assert (folder / "last.ckpt").is_file()
        best = torch.load(folder / "best.ckpt", weights_only=False)
        state = next(v for k, v in best["callbacks"].items() if "monitor" in v and v["monitor"] == monitor)
        assert state["best_model_path"].endswith("best.ckpt") and math.isfinite(float(state["best_model_score"]))


@pytest.mark.parametrize("steps", ["profile.steps.stage=-1", "profile.steps.stage0=0"])
def test_step_counts_below_one_are_refused_before_anything_is_written(tmp_path, steps):
    with pytest.raises(ValueError, match="steps must be at least 1"):
        run_job(compose_config([*SMOKE, steps], tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_pin_memory_follows_the_device():
    from pcsr_lightning.data.datamodule import pin_memory_for

    assert pin_memory_for(None, "cuda") and not pin_memory_for(None, "cpu")
    assert not pin_memory_for(False, "cuda") and pin_memory_for(True, "cpu")


def test_pipeline_comes_from_the_config_and_follows_m(tmp_path):
    net = build_model(OmegaConf.to_container(compose_config(["model.num_classes=4"]).model.net, resolve=True))
    plans = stage_plan(compose_config(["model.num_classes=4"]), net)
    assert [(p.name, p.trains, p.options) for p in plans] == [
        ("stage0", ["backbone", "upsamplers.0"], {}),
        ("stage1", ["upsamplers.1", "classifier"], {"index": 1}),
        ("stage2", ["upsamplers.2", "classifier"], {"index": 2}),
        ("stage3", ["upsamplers.3", "classifier"], {"index": 3})]
    cfg = compose_config(["model.stages.stage_j.module.average_weight=0.5",
                          "model.stages.stage0.module.trains=[backbone]"])
    with pytest.raises(ValueError, match=r"no stage of model.stages trains \['upsamplers.0"):
        stage_plan(cfg, tiny_pcsr())
    cfg = compose_config(["model.stages.stage_j.module.average_weight=0.5"])
    assert stage_plan(cfg, tiny_pcsr())[1].module(tiny_pcsr(), adam()).average_weight == 0.5
    with pytest.raises(ValueError, match="no part .* in this PCSR"):
        stage_plan(compose_config(["model.stages.stage0.module.trains=[trunk]"]), tiny_pcsr())
    job = subprocess.run([str(BIN / "pcsr-train"), "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path)
    assert "pcsr_lightning.training.stages.UpsamplerStage" in job.stdout and "average_weight: 3.0" in job.stdout


def plan_of(overrides) -> list[tuple[str, str, int]]:
    cfg = compose_config(list(overrides))
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    return [(p.name, p.module_path.rsplit(".", 1)[-1], p.steps) for p in stage_plan(cfg, net)]


def test_stages_are_addressed_by_key():
    """model.stages maps keys to entries: stage_j's settings reach every j, a key named after one of its
    stages (stage2) only that stage, a null entry is left out."""
    m3 = ["model.num_classes=3"]
    cfg = compose_config([*m3, "model.stages.stage_j.module.average_weight=0.5",
                          "+model.stages.stage2.module.lr_scale={classifier: 0.5}", "+model.stages.stage2.steps=9"])
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    plans = {p.name: p for p in stage_plan(cfg, net)}
    assert list(plans) == ["stage0", "stage1", "stage2"]
    stage1, stage2 = (plans[n].module(net, adam(), name=n) for n in ("stage1", "stage2"))
    assert (stage1.average_weight, stage1.lr_scale, plans["stage1"].steps) == (0.5, {}, 2000)
    assert (stage2.average_weight, stage2.lr_scale, plans["stage2"].steps) == (0.5, {"classifier": 0.5}, 9)
    cfg = compose_config(["model=pcsr_routed", "+model.stages.stage1_routed.module.skip_hardest=0.1"])
    assert stage_plan(cfg, tiny_pcsr())[-1].module(tiny_pcsr(), adam()).skip_hardest == 0.1
    assert plan_of(["model=pcsr_routed", "model.stages.stage_j_routed=null"]) == [
        ("stage0", "BackboneStage", 6000), ("stage1", "UpsamplerStage", 2000)]


@pytest.mark.parametrize("overrides, message", [
    (["+model.stages.1.module.lr_scale={classifier: 0.5}"],
     r"model.stages.1 is no stage \(it lacks \['steps'\]\) nor the name of one stage of a for_j entry: "
     r"this pipeline's stages are \['stage0', 'stage1'\]"),
    (["+model.stages.stage2.module.lr_scale={classifier: 0.5}"], "model.stages.stage2 is no stage"),
    (["+model.stages.stage1.name=stage1"], r"settings for stage stage1 of model.stages.stage_j, whose name and place"),
    (["+model.stages.stage1.steps=3", "+model.stages.stage1b={after: stage1, steps: 3}"],
     r"model.stages.stage1 gives settings for stage stage1 of model.stages.stage_j, "
     r"whose name and place \(after:\)"),
    (["model=pcsr_routed", "model.stages.stage_j_routed.after=stage_k"],
     "after: stage_k, but model.stages has no entry"),
    (["model=pcsr_routed", "+model.stages.stage_j_routed.for_j={from: 1, below: 2}"], "takes no for_j of its own"),
    (["model.stages.stage_j.name=upsampler"], r"repeats for each j: its name needs \{j\}"),
    (["+model.stages.stage0.name=backbone"], "a stage that does not repeat is named by its key"),
    (["model=pcsr_routed", "model.stages.stage_j_routed.name='stage{j}'"], "gives stage names twice"),
    (["model=pcsr_routed", "model.stages.stage_j_routed.after=stage_x",
      "+model.stages.stage_x={after: stage_j_routed}"],
     r"the after: entries \['stage_j_routed', 'stage_x'\] follow each other in a loop"),
])
def test_stage_entries_that_cannot_run_are_refused(overrides, message):
    cfg = compose_config(overrides)
    with pytest.raises(ValueError, match=message):
        stage_plan(cfg, build_model(OmegaConf.to_container(cfg.model.net, resolve=True)))


def test_a_list_of_stages_is_refused_clearly():
    """The earlier form (a list, entries found by position; a for_j entry holding a group) is not read."""
    old = OmegaConf.create({"model": {"num_classes": 2, "stages": [
        {"name": "stage0", "steps": 3, "module": {"_target_": "pcsr_lightning.training.stages.BackboneStage",
                                                 "_partial_": True, "trains": ["backbone", "upsamplers.0"]}}]}})
    with pytest.raises(ValueError, match=r"model.stages is a list, but it is a mapping .* model.stages.stage_j"):
        stage_plan(old, tiny_pcsr())
    grouped = OmegaConf.create({"model": {"num_classes": 2, "stages": {"stage_j": {
        "for_j": {"from": 1, "below": 2}, "stages": [{"name": "stage{j}"}]}}}})
    with pytest.raises(ValueError, match=r"model.stages.stage_j holds a group .* after: KEY"):
        stage_plan(grouped, tiny_pcsr())


# ------------------------------------------------------------------ warm start

TINY = [*SMOKE, "profile.steps.stage0=1", "profile.steps.stage=1", "profile.val_every=100"]


@pytest.fixture(scope="module")
def trained_m2(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("m2") / "run"
    run_job(compose_config(TINY, run))
    return run


def test_warm_start_takes_stage0_and_trains_the_rest(trained_m2, tmp_path):
    source = final_weights(trained_m2)
    for given in (trained_m2 / "final.ckpt", trained_m2, trained_m2 / "manifest.json"):
        seen = FirstStep()
        run = tmp_path / given.name
        manifest = run_job(compose_config([*TINY, f"init.checkpoint={given}", "init.stages=[stage0]", "seed=5"], run),
                           callbacks=[seen])
        assert list(seen.seen) == ["stage1"]
        record = manifest.stage("stage0")
        assert record.status == "done" and record.config["loaded"] == ["backbone", "upsamplers.0"]
        assert Path(record.config["init_from"]).is_file()
        weights = final_weights(run)
        for key in weights:
            same = torch.equal(weights[key], source[key])
            assert same == key.startswith(("backbone.", "upsamplers.0.")), key
    resumed = compose_config([*TINY, f"init.checkpoint={trained_m2}", "init.stages=[stage0]", "resume=true"], run)
    assert run_job(resumed).stage("stage0").config["init_from"] == record.config["init_from"]


def test_warm_start_extends_m2_to_m3(trained_m2, tmp_path):
    widths = "model.net.upsampler_hidden=[[58,58,58,58],[10,10,10],[6,6,6]]"
    seen = FirstStep()
    manifest = run_job(compose_config([*TINY, "model.num_classes=3", widths, f"init.checkpoint={trained_m2}",
                                       "init.stages=[stage0,stage1]"], tmp_path / "run"), callbacks=[seen])
    assert list(seen.seen) == ["stage2"]
    assert manifest.stage("stage1").config["loaded"] == ["upsamplers.1"]  # C is trained again by stage 2
    weights, source = final_weights(tmp_path / "run"), final_weights(trained_m2)
    assert torch.equal(weights["upsamplers.1.layers.0.weight"], source["upsamplers.1.layers.0.weight"])
    assert weights["classifier.layers.0.weight"].shape[0] == 3


def test_warm_start_extension_chooses_widths_and_resumes(trained_m2, tmp_path):
    """Without explicit widths the loaded upsamplers keep the source's and U_2 continues the ladder below
    U_1: round(10 * (10 / 58) ** (1 / 2)) = 4 wide, at the light depth."""
    run = tmp_path / "run"
    overrides = [*TINY, "model.num_classes=3", f"init.checkpoint={trained_m2}", "init.stages=[stage0,stage1]"]
    run_job(compose_config(overrides, run))
    loaded = load_checkpoint(run / "final.ckpt")
    assert loaded.config["upsampler_hidden"] == [[58, 58, 58, 58], [10, 10, 10], [4, 4, 4]]
    assert [u.hidden_list for u in loaded.model.upsamplers] == [[58, 58, 58, 58], [10, 10, 10], [4, 4, 4]]
    costs = cost_list(loaded.model, 4)
    assert bool((costs[:-1] > costs[1:]).all())  # U_0 heaviest, each next one cheaper
    before = final_weights(run)
    for source in (trained_m2, tmp_path / "moved"):  # resuming rebuilds the run's widths, source or not
        manifest = run_job(compose_config([*overrides[:-2], f"init.checkpoint={source}", "init.stages=[stage0,stage1]",
                                           "resume=true"], run))
        assert manifest.stage("stage2").status == "done"
        after = final_weights(run)
        assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("overrides, message", [
    (["experiment=carn_pcsr"], "backbone is a FSRCNN in .*, this model's is a CARN"),
    (["model.num_classes=3", "init.stages=[stage0,stage1]",
      "model.net.upsampler_hidden=[[58,58,58,58],[24,24,24,24],[10,10,10]]"],
     r"upsamplers.1 has widths \[10, 10, 10\] -> 3 in .*this model's are \[24, 24, 24, 24\]"),
    (["experiment=fsrcnn_original", "init.stages=[original]"],
     "holds a model of kind 'pcsr', this run trains kind 'original'"),
    (["init.stages=[stage1]"], "must be the first stages"),
])
def test_warm_start_mismatches_fail_before_anything_is_written(trained_m2, tmp_path, overrides, message):
    cfg = compose_config([*TINY, f"init.checkpoint={trained_m2 / 'final.ckpt'}", "init.stages=[stage0]", *overrides],
                         tmp_path / "run")
    with pytest.raises(ValueError, match=message):
        run_job(cfg)
    assert not (tmp_path / "run").exists()


def test_routed_pipeline_follows_each_stage_with_its_upsampler_alone(trained_m2, tmp_path):
    cfg = compose_config(["model=pcsr_routed", "model.num_classes=3", "model.routed_steps=7"])
    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    assert [(p.name, p.trains, p.steps) for p in stage_plan(cfg, net)] == [
        ("stage0", ["backbone", "upsamplers.0"], 6000),
        ("stage1", ["upsamplers.1", "classifier"], 2000), ("stage1_routed", ["upsamplers.1"], 7),
        ("stage2", ["upsamplers.2", "classifier"], 2000), ("stage2_routed", ["upsamplers.2"], 7)]

    run = tmp_path / "run"
    seen = FirstStep()
    manifest = run_job(compose_config([*TINY, "model=pcsr_routed", "profile.steps.stage=2", "model.routed_steps=3",
                                       f"init.checkpoint={trained_m2}", "init.stages=[stage0]"], run),
                       callbacks=[seen])
    assert list(seen.seen) == ["stage1", "stage1_routed"]
    assert [manifest.stage(n).metrics["steps"] for n in seen.seen] == [2, 3]
    routed = manifest.stage("stage1_routed").config
    assert routed["module"].endswith("RoutedUpsamplerStage")
    assert routed["loss"] == {"l1_weight": 1000.0, "skip_hardest": 0.05, "p_power": 1.0, "teacher_weight": 0.0,
                              "revive_every": 0}
    assert manifest.stage("stage1").config["loss"] == {"l1_weight": 1000.0, "average_weight": 3.0, "revive_every": 0}
    after_stage1 = load_checkpoint(run / "stages" / "stage1" / "model.ckpt").model.state_dict()
    final = final_weights(run)
    for key, value in final.items():
        unchanged = torch.equal(value, after_stage1[key])
        assert unchanged == (not key.startswith("upsamplers.1.")), key


def test_the_router_pipeline_ends_with_the_classifier_alone(trained_m2, tmp_path):
    run = tmp_path / "run"
    manifest = run_job(compose_config([*TINY, "model=pcsr_router", "model.routed_steps=1", "model.router_steps=2",
                                       f"init.checkpoint={trained_m2}", "init.stages=[stage0]"], run))
    assert [s.name for s in manifest.stages] == ["stage0", "stage1", "stage1_routed", "stage1_router"]
    router = manifest.stage("stage1_router").config
    assert router["module"].endswith("RouterStage") and router["steps"] == 2
    assert router["loss"] == {"heavy_share": 0.06, "relative": 1.0}
    after_routed = load_checkpoint(run / "stages" / "stage1_routed" / "model.ckpt").model.state_dict()
    for key, value in final_weights(run).items():
        assert torch.equal(value, after_routed[key]) == (not key.startswith("classifier.")), key


def test_the_retraining_recipe_runs_from_a_checkpoints_stage0(trained_m2, tmp_path):
    """experiment=retrain_fsrcnn end to end, its schedule shrunk to a few steps on the sample photos."""
    seen = FirstStep()
    overrides = ["experiment=retrain_fsrcnn", "data=samples", *TINY, f"init.checkpoint={trained_m2}",
                 "profile.batch_size=2", "profile.queries=64", "model.routed_steps=1"]
    manifest = run_job(compose_config(overrides, tmp_path / "run"), callbacks=[seen])
    assert list(seen.seen) == ["stage1", "stage1_routed"] and manifest.experiment == "fsrcnn_pcsr"
    assert manifest.stage("stage0").config["loaded"] == ["backbone", "upsamplers.0"]
    assert manifest.stage("stage1").config["lr_scale"] == {"classifier": 0.3333}
    assert manifest.stage("stage1").config["optimizer"]["lr"] == 3e-3


def test_warm_start_of_the_routed_stage_continues_from_the_loaded_u1(trained_m2, tmp_path):
    run = tmp_path / "run"
    manifest = run_job(compose_config([*TINY, "model=pcsr_routed", "model.routed_steps=2", "optimizer.lr=1e-9",
                                       f"init.checkpoint={trained_m2}", "init.stages=[stage0,stage1]"], run))
    assert manifest.stage("stage1").config["loaded"] == ["upsamplers.1", "classifier"]
    assert manifest.stage("stage1_routed").status == "done"
    source, weights = final_weights(trained_m2), final_weights(run)
    for key in weights:  # U_1 is trained again, from the loaded weights (lr 1e-9: it barely moves)
        assert torch.allclose(weights[key], source[key], atol=1e-6), key


def test_routed_upsampler_stage_trains_u1_alone_weighted_by_its_probability():
    net = tiny_pcsr()
    stage = configured_stage(net, "stage1_routed", ["model=pcsr_routed"])
    assert isinstance(stage, RoutedUpsamplerStage) and stage.trainable_names() == ["upsamplers.1"]
    calls = []
    net.upsamplers[0].register_forward_hook(lambda *_: calls.append("U_0"))
    batch = fake_batch()
    loss = stage.training_step(batch, 0)
    assert calls == []  # the heavy upsampler does not run: U_1 stands alone, as routing uses it
    inputs, base, target = queries_by_hand(net, batch)
    alone = net.upsamplers[1](inputs) + base
    p1 = torch.softmax(net.classifier(inputs), -1)[..., 1:2]
    assert stage.skip_hardest == 0.05  # the config's: 3 of the batch's 64 pixels, those with the lowest p_1
    w = torch.where(p1 > p1.flatten().sort().values[2], p1, 0.0)
    by_hand = 1000 * (w * (alone - target).abs()).sum() / (3 * w.sum())
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for m in (net.classifier, net.backbone, net.upsamplers[0]) for p in m.parameters())
    assert all(p.grad is not None for p in net.upsamplers[1].parameters())
    stage.skip_hardest = 0.25  # 2 of 8 pixels: the two with the lowest p_1 are left out
    p1 = torch.tensor([[0.9, 0.2, 0.6, 0.5], [0.1, 0.7, 0.8, 0.55]])
    weights = stage.pixel_weights(torch.stack([1 - p1, p1], -1))
    assert torch.equal(weights, torch.where(p1 > 0.2, p1, 0.0))
    stage.p_power = 0.0  # every kept pixel alike
    assert torch.equal(stage.pixel_weights(torch.stack([1 - p1, p1], -1)), (p1 > 0.2).float())
    stage.p_power = 2.0
    assert torch.allclose(stage.pixel_weights(torch.stack([1 - p1, p1], -1)), torch.where(p1 > 0.2, p1 * p1, 0.0))
    with pytest.raises(ValueError, match="fraction of pixels left out"):
        RoutedUpsamplerStage(tiny_pcsr(), adam(), trains=["upsamplers.1"], skip_hardest=1.0)
    with pytest.raises(ValueError, match="teacher_weight"):
        RoutedUpsamplerStage(tiny_pcsr(), adam(), trains=["upsamplers.1"], teacher_weight=-1.0)
    with pytest.raises(ValueError, match="U_0 must not train"):
        RoutedUpsamplerStage(tiny_pcsr(), adam(), trains=["upsamplers.1", "upsamplers.0"], teacher_weight=1.0)
    with pytest.raises(ValueError, match="p_power"):
        RoutedUpsamplerStage(tiny_pcsr(), adam(), trains=["upsamplers.1"], p_power=-1.0)
    with pytest.raises(ValueError, match="classifier must stay frozen"):
        RoutedUpsamplerStage(tiny_pcsr(), adam(), trains=["upsamplers.1", "classifier"])
    with pytest.raises(ValueError, match="needs a trained classifier"):
        RoutedUpsamplerStage(tiny_pcsr(), adam(), index=0, trains=["upsamplers.0"])


def test_the_routed_stage_distils_the_frozen_heavy_upsampler_when_given_a_teacher_weight():
    net = tiny_pcsr()
    stage = configured_stage(net, "stage1_routed", ["model=pcsr_routed",
                                                    "model.stages.stage_j_routed.module.teacher_weight=500"])
    assert stage.teacher_weight == 500 and stage.trainable_names() == ["upsamplers.1"]
    batch = fake_batch()
    loss = stage.training_step(batch, 0)
    inputs, base, target = queries_by_hand(net, batch)
    alone, teacher = net.upsamplers[1](inputs) + base, net.upsamplers[0](inputs) + base
    w = stage.pixel_weights(torch.softmax(net.classifier(inputs), -1))[..., None]
    by_hand = (1000 * (w * (alone - target).abs()).sum() + 500 * (w * (alone - teacher).abs()).sum()) / (3 * w.sum())
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    loss.backward()  # the teacher gets no gradient: only U_1 learns
    assert all(p.grad is None for m in (net.classifier, net.backbone, net.upsamplers[0]) for p in m.parameters())
    assert all(p.grad is not None for p in net.upsamplers[1].parameters())


@pytest.mark.parametrize("relative", [False, True])
def test_the_router_stage_trains_the_classifier_alone_on_each_pixels_gain(relative):
    net = tiny_pcsr()
    stage = RouterStage(net, adam(), heavy_share=0.25, relative=relative)
    assert stage.trainable_names() == ["classifier"] and stage.stage_name == "stage1_router"
    batch = fake_batch()
    loss = stage.training_step(batch, 0)
    inputs, base, target = queries_by_hand(net, batch)
    e0, e1 = ((net.upsamplers[c](inputs) + base).clamp(0, 1).sub(target).pow(2).mean(-1) for c in (0, 1))
    gain = (e1 - e0) / (e1.mean(-1, keepdim=True) if relative else 1.0)
    logits = net.classifier(inputs)
    by_hand = routing_loss(logits[..., 0] - logits[..., 1], gain, 0.25)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for m in (net.backbone, *net.upsamplers) for p in m.parameters())
    assert all(p.grad is not None for p in net.classifier.parameters())
    with pytest.raises(ValueError, match="classifier alone"):
        RouterStage(tiny_pcsr(), adam(), trains=["classifier", "upsamplers.1"])
    with pytest.raises(ValueError, match="heavy_share"):
        RouterStage(tiny_pcsr(), adam(), heavy_share=1.0)
    with pytest.raises(ValueError, match="two upsamplers"):
        RouterStage(tiny_pcsr(upsampler_hidden=[[8], [6], [4]]), adam(), index=1)


class ActivitySeen(L.Callback):
    """What the stage's dead-unit watch has counted as active after each training batch."""

    def __init__(self):
        self.seen: list[tuple[str, list[int]]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.dead_units is not None:
            self.seen.append((module.stage_name, [int(a.sum()) for a in module.dead_units.active]))


def test_a_training_run_watches_the_trained_upsamplers_units_and_records_the_setting(trained_m2, tmp_path):
    seen = ActivitySeen()
    manifest = run_job(compose_config([*TINY, "model=pcsr_routed", "profile.steps.stage=2", "model.routed_steps=2",
                                       "model.stages.stage_j.module.revive_every=100",
                                       "model.stages.stage_j_routed.module.revive_every=100",
                                       f"init.checkpoint={trained_m2}", "init.stages=[stage0]"], tmp_path / "run"),
                       callbacks=[seen])
    assert [name for name, _ in seen.seen] == ["stage1", "stage1", "stage1_routed", "stage1_routed"]
    # the training queries reach the hooks: units were seen active (not every unit judged dead)
    assert all(sum(active) > 0 for _, active in seen.seen)
    assert manifest.stage("stage1").config["loss"]["revive_every"] == 100
    assert manifest.stage("stage1_routed").config["loss"]["revive_every"] == 100


def test_lr_scale_gives_a_part_its_own_learning_rate():
    net = tiny_pcsr()
    stage = configured_stage(net, "stage1", ["+model.stages.stage1.module.lr_scale={classifier: 0.25}"])
    stage.scheduler_factory = None
    optimizer = stage.configure_optimizers()
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert {round(lrs[id(p)], 9) for p in net.upsamplers[1].parameters()} == {1e-2}
    assert {round(lrs[id(p)], 9) for p in net.classifier.parameters()} == {2.5e-3}
    assert len(lrs) == sum(1 for p in net.parameters() if p.requires_grad)
    config = stage_config(compose_config(["+model.stages.stage1.module.lr_scale={classifier: 0.25}"]),
                          SimpleNamespace(module_path="m", steps=3, options={}), stage)
    assert config["lr_scale"] == {"classifier": 0.25}
    with pytest.raises(ValueError, match="lr_scale must give positive factors for parts it trains"):
        configured_stage(tiny_pcsr(), "stage1", ["+model.stages.stage1.module.lr_scale={backbone: 0.5}"])


def test_one_model_for_every_scale(tmp_path):
    """data.scale=[1, 4]: crops of mixed scales train one PCSR, validated at x2, x3, x4 (keys per scale, the
    plain keys their mean), which then serves x2, x3, x4 and x2.5 from the Python API and `pcsr eval`."""
    from PIL import Image

    from conftest import sample_photo
    from pcsr_lightning import load

    cfg = compose_config([*SMOKE, "logger=csv", "callbacks=default", "experiment=fsrcnn_pcsr_anyscale_cpu",
                          "data.queries=64"], tmp_path / "run")
    assert list(cfg.data.scale) == [1, 4] and list(cfg.data.val_scales) == [2, 3, 4]
    manifest = run_job(cfg)
    metrics = manifest.stage("stage1").metrics
    per_scale = [metrics[f"val_psnr_k0_x{s}"] for s in (2, 3, 4)]
    assert all(math.isfinite(v) for v in per_scale)
    assert metrics["val_psnr_k0"] == pytest.approx(sum(per_scale) / 3, abs=1e-4)
    sweep = next((tmp_path / "run" / "csv").rglob("k_sweep.csv")).read_text()  # at the largest scale, x4
    assert sweep.startswith("setting,k,gflops_paper") and len(sweep.splitlines()) > 3
    model = load(manifest.final_checkpoint, device="cpu")
    lr = sample_photo("chelsea")[:, :20, :24]
    for scale, size in ((2, (40, 48)), (3, (60, 72)), (4, (80, 96)), (2.5, (50, 60))):
        sr = model(lr, scale=scale)
        assert tuple(sr.shape[-2:]) == size and torch.isfinite(sr).all()
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    img = (sample_photo("chelsea")[:, :60, :72] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).save(hr_dir / "cat.png")
    out = tmp_path / "eval.csv"
    assert pcsr_main(["eval", "--ckpt", manifest.final_checkpoint, "--hr-dir", str(hr_dir), "--out", str(out),
                      "--scale", "3"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[-1]["image"] == "mean" and math.isfinite(float(rows[-1]["psnr"]))


def test_validation_images_of_each_scale_go_under_its_own_key(monkeypatch):
    """Each validation scale's loader counts its batches from 0: its images are logged under its own key."""
    from pcsr_lightning.data.datamodule import SRDataModule
    from pcsr_lightning.data.sources import SamplePhotos
    from pcsr_lightning.training import callbacks

    logged = {}
    monkeypatch.setattr(callbacks, "log_images", lambda trainer, key, images, captions: logged.update(
        {key: (images, captions)}))
    photos = SamplePhotos(["astronaut", "chelsea"])
    loaders = SRDataModule(photos, photos, scale=[1, 4], queries=64, val_crop=60, val_scales=[2, 3]).val_dataloader()
    trainer = SimpleNamespace(sanity_checking=False, state=SimpleNamespace(fn="fit"), is_global_zero=True,
                              global_step=7)
    module = SimpleNamespace(stage_name="stage1", net=SimpleNamespace(num_classes=2))
    images = callbacks.ValidationImages(images=2, crop=24)
    images.on_validation_epoch_start(trainer, module)
    for index, loader in enumerate(loaders):
        for batch_idx, batch in enumerate(loader):
            sr = torch.full_like(batch["hr"], float(batch["scale"][0]) / 10)  # each scale's SR is its own grey
            images.on_validation_batch_end(trainer, module, {"sr": sr, "classes": None}, batch, batch_idx, index)
    images.on_validation_epoch_end(trainer, module)
    assert sorted(logged) == ["stage1/val_images_x2", "stage1/val_images_x3"]
    for scale in (2, 3):
        rows, captions = logged[f"stage1/val_images_x{scale}"]
        assert len(rows) == 2 and all(f"at x{scale}," in c for c in captions)
        for row in rows:  # the middle of bicubic | SR | HR is this scale's grey
            assert torch.allclose(row[:, :, 28:52], torch.full_like(row[:, :, 28:52], scale / 10))


def test_a_range_run_records_its_scale_and_resumes(tmp_path):
    cfg = compose_config([*SMOKE, "experiment=fsrcnn_pcsr_anyscale_cpu", "data.queries=64", "profile.steps.stage=4",
                          "data.val_scales=[2,3]"], tmp_path / "run")
    with pytest.raises(RuntimeError, match="simulated interruption"):
        run_job(cfg, callbacks=[Interrupt("stage1", 2)])
    assert Manifest.load(tmp_path / "run").scale == [1, 4]
    other = compose_config([*SMOKE, "experiment=fsrcnn_pcsr_anyscale_cpu", "data.queries=64", "data.scale=[2,4]",
                            "resume=true"], tmp_path / "run")
    with pytest.raises(ValueError, match=r"its scale is \[1, 4\], this config's is \[2, 4\]"):
        run_job(other)
    cfg.resume = True
    seen = FirstStep()
    manifest = run_job(cfg, callbacks=[seen])
    assert seen.seen == {"stage1": 2} and manifest.scale == [1, 4]
    assert [(s.name, s.status) for s in manifest.stages] == [("stage0", "done"), ("stage1", "done")]
    assert math.isfinite(manifest.stage("stage1").metrics["val_psnr_k0_x3"])
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["scale"] == [1, 4]


def test_a_scale_range_needs_a_pcsr(tmp_path):
    cfg = compose_config([*SMOKE, "experiment=fsrcnn_original", "data.scale=[1,4]"], tmp_path / "run")
    with pytest.raises(ValueError, match="an original network upsamples by one integer scale"):
        run_job(cfg)
    assert not (tmp_path / "run" / "manifest.json").exists()
