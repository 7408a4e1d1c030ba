"""The learned flat-tile gate: the network, its target, its training stage, the scorer switch and its files."""

import math

import pytest
import torch
import torch.nn.functional as F

from factories import save_tiny, tiny_config
from pcsr_lightning.apps.cli import main
from pcsr_lightning.config import compose_config
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate
from pcsr_lightning.inference.gate import (
    GATE_MACS_PER_LR_PIXEL,
    flatness_scores,
    plan_skip,
    tile_residuals,
    tile_scores,
)
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.checkpoint import build_model, load_checkpoint, save_checkpoint
from pcsr_lightning.io.weights import load_model, save_model
from pcsr_lightning.models import LearnedGate
from pcsr_lightning.training.pipeline import stage_plan
from pcsr_lightning.training.stages import GateStage

GATE = {"_target_": "pcsr_lightning.models.LearnedGate", "hidden": 6}


def gated_config(backbone="carn"):
    return {**tiny_config("pcsr", backbone), "gate": dict(GATE)}


def gated(seed=0, backbone="carn"):
    torch.manual_seed(seed)
    return build_model(gated_config(backbone)).eval()


def adam(params):
    return torch.optim.Adam(params, lr=1e-2)


def test_the_gate_is_a_few_hundred_weights_and_scores_each_tile():
    gate = LearnedGate()
    assert sum(p.numel() for p in gate.parameters()) == 511
    assert "511 parameters" in repr(gate) and gate.macs_per_lr_pixel() == 9 * 3 * 6 + 9 * 36
    lr = torch.rand(2, 3, 37, 50)
    scores = gate.scores(lr, 16)
    assert scores.shape == (2, 3, 4) and bool((scores > 0).all())
    assert gate(lr, 16).shape == (2, 3, 4)
    # a tile's score depends on its own pixels and 2 around it, not on far ones
    far = lr.clone()
    far[..., 40:, :] = 0
    assert torch.allclose(gate(lr, 16)[:, 0], gate(far, 16)[:, 0])
    with pytest.raises(ValueError, match="tile"):
        gate(lr, 0)
    with pytest.raises(ValueError, match="hidden"):
        LearnedGate(0)


def test_the_target_is_the_rms_residual_over_each_tiles_hr_pixels():
    lr_size, tile, scale = (8, 12), 4, 2  # tiles: 2 x 3, each 8 x 8 HR pixels
    cheap = torch.rand(1, 3, 16, 24)
    sr = cheap.clone()
    sr[0, 0, 0:8, 8:16] += 0.3  # tile (0, 1): one channel of three off by 0.3 -> rms 0.3 / sqrt(3)
    sr[0, :, 8:16, 16:24] -= 0.1  # tile (1, 2): every channel off by 0.1 -> rms 0.1
    sr[0, :, 8:12, 0:8] += 0.2  # tile (1, 0): half its pixels off by 0.2 -> rms 0.2 / sqrt(2)
    want = torch.zeros(1, 2, 3)
    want[0, 0, 1], want[0, 1, 2], want[0, 1, 0] = 0.3 / math.sqrt(3), 0.1, 0.2 / math.sqrt(2)
    assert torch.allclose(tile_residuals(sr, cheap, lr_size, tile), want, atol=1e-6)
    assert scale == 16 // lr_size[0]
    # edge tiles hold fewer pixels: their mean is over those
    got = tile_residuals(sr[..., :14, :], cheap[..., :14, :], (7, 12), tile)
    assert got.shape == (1, 2, 3) and torch.allclose(got[0, 1, 2], torch.tensor(0.1), atol=1e-6)


def test_the_gate_stage_trains_the_gate_alone_on_the_frozen_networks_residual():
    net = gated()
    stage = GateStage(net, adam, tile=4)
    optimizer = stage.configure_optimizers()
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in net.gate.parameters()}
    assert stage.trainable_names() == ["gate"] and "backbone" in stage.frozen_names()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    stage.train()
    assert not net.backbone.training and net.gate.training
    lr = torch.rand(2, 3, 16, 16)
    batch = {"lr": lr, "hr": torch.rand(2, 3, 64, 64), "idx": torch.zeros(2, 8, dtype=torch.long)}
    loss = stage.training_step(batch, 0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = net.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v) == (not k.startswith("gate.")), k
    # the target: the routed output at k = 0 minus bicubic, rms per tile, log with eps
    target, out = stage.targets(lr)
    cheap = F.interpolate(lr, size=(64, 64), mode="bicubic", align_corners=False)
    want = torch.log(tile_residuals(upscale(net, lr, 4, k=0.0).sr, cheap, (16, 16), 4) + stage.eps)
    assert target.shape == (2, 4, 4) and torch.allclose(target, want)
    assert out.sr.shape == (2, 3, 64, 64)


def test_the_gate_stage_keeps_crops_and_refreshes_them_every_nth_batch():
    net = gated()
    stage = GateStage(net, adam, tile=4, buffer=3, fresh_every=2)
    calls = []
    real = stage.targets
    stage.targets = lambda lr: calls.append(lr.shape[0]) or real(lr)
    for step in range(4):
        stage.training_step({"lr": torch.rand(2, 3, 8, 8)}, step)
    assert calls == [2, 2] and len(stage.kept) == 3
    with pytest.raises(ValueError, match="buffer"):
        GateStage(gated(), adam, fresh_every=2)


def test_the_gate_stage_refuses_a_network_without_a_gate_or_other_parts():
    with pytest.raises(ValueError, match="has none"):
        GateStage(build_model(tiny_config()), adam)
    with pytest.raises(ValueError, match="gate alone"):
        GateStage(gated(), adam, trains=["gate", "classifier"])


def test_the_gated_pipeline_adds_the_gate_stage_after_the_papers():
    cfg = compose_config(["model=pcsr_gated", "model.gate_steps=7"])
    from omegaconf import OmegaConf

    net = build_model(OmegaConf.to_container(cfg.model.net, resolve=True))
    plans = stage_plan(cfg, net)
    assert [(p.name, p.steps, p.trains) for p in plans][-1] == ("gate", 7, ["gate"])
    assert [p.name for p in plans] == ["stage0", "stage1", "gate"]
    stage = plans[-1].module(net, adam, name="gate")
    assert isinstance(stage, GateStage) and stage.tile == 16


def test_the_learned_scorer_through_upscale_and_srmodel(tmp_path):
    net = gated()
    lr = torch.rand(1, 3, 32, 48)
    scores = tile_scores(net, lr, 16, "learned").detach()
    assert torch.allclose(scores, net.gate.scores(net.normalize(lr), 16))
    assert torch.equal(tile_scores(net, lr, 16, "laplacian"), flatness_scores(lr, 16))
    threshold = float(scores.flatten().sort().values[2])  # skips the two lowest tiles
    plan = plan_skip(net, lr, 4, threshold, scorer="learned")
    assert int((~plan.active).sum()) == 2 and plan.scorer == "learned"
    assert plan.gate_macs_per_lr_pixel == net.gate.macs_per_lr_pixel() != GATE_MACS_PER_LR_PIXEL
    out = upscale(net, lr, 4, skip_flat=threshold, skip_gate="learned")
    assert torch.equal(out.gate.active, plan.active)
    assert torch.equal(upscale(net, lr, 4, skip_flat=0.0, skip_gate="learned").sr, upscale(net, lr, 4).sr)
    path = save_model(tmp_path / "gated.ckpt", net, gated_config())
    model = load(path, "cpu")
    assert model.has_learned_gate and "learned gate" in repr(model)
    up = model.upscale(lr, skip_flat=threshold, skip_gate="learned")
    assert up.skipped_share == pytest.approx(2 * 16 * 16 / (32 * 48))
    lap = model.upscale(lr, skip_flat=threshold)
    assert up.gflops["paper"] != lap.gflops["paper"]
    sr, classes = model.super_resolve(lr, 4, RoutingSpec.build(skip_flat=threshold, skip_gate="learned"))
    assert torch.allclose(sr, out.sr, atol=1e-5) and int((classes == 2).sum()) == 2 * 64 * 64


def test_learned_asked_of_a_model_without_a_gate_is_a_clear_error(tmp_path):
    net = build_model(tiny_config())
    lr = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="has none"):
        upscale(net, lr, 4, skip_flat=0.01, skip_gate="learned")
    with pytest.raises(ValueError, match="scorer must be one of"):
        RoutingSpec.build(skip_flat=0.01, skip_gate="sobel")
    path = save_tiny(tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="has none"):
        load(path, "cpu").upscale(lr, skip_flat=0.01, skip_gate="learned")
    hr = tmp_path / "hr"
    hr.mkdir()
    from PIL import Image

    Image.fromarray((torch.rand(32, 32, 3) * 255).byte().numpy()).save(hr / "a.png")
    with pytest.raises(ValueError, match="has none"):
        evaluate(EvalSettings(ckpt=str(path), hr_dir=str(hr), skip_flat=[0.01], skip_gate="learned"),
                 log=lambda s: None)
    out = tmp_path / "out"
    assert main(["upscale", "--ckpt", str(path), "--input", str(hr), "--output", str(out), "--skip-flat", "0.01",
                 "--gate", "learned"]) != 0


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_checkpoints_carry_the_gate_and_old_ones_load_without_it(tmp_path, suffix):
    net = gated(seed=3)
    path = save_model(tmp_path / f"gated{suffix}", net, gated_config())
    loaded = load_model(path).model
    assert isinstance(loaded.gate, LearnedGate)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    old = save_checkpoint(tmp_path / "old.ckpt", build_model(tiny_config()), tiny_config())
    assert load_checkpoint(old).model.gate is None and not load(old, "cpu").has_learned_gate
    assert not any(k.startswith("gate.") for k in load_checkpoint(old).model.state_dict())


def test_eval_reports_the_learned_scorer(tmp_path):
    from PIL import Image

    net = gated()
    path = save_model(tmp_path / "gated.ckpt", net, gated_config())
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray((torch.rand(64, 64, 3) * 255).byte().numpy()).save(hr / "a.png")
    settings = EvalSettings(ckpt=str(path), hr_dir=str(hr), skip_flat=[0.0, 100.0], skip_gate="learned")
    records, failed = evaluate(settings, log=lambda s: None)
    assert failed == 0
    gated_rows = [r for r in records if r.skip_flat is not None]
    assert [r.skipped_share for r in gated_rows] == [0.0, 1.0]
