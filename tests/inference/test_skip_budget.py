"""The gate's loss budget: its arithmetic on synthetic images where the answer is known, its ends (0 skips
nothing, a huge budget skips what the threshold would), its counted cost, and the same plan through the
CLI, the Hydra app and the Python API."""

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

import pcsr_lightning
from bad_input_kit import run_app, run_cli
from factories import half_flat, pcsr_net, save_tiny
from pcsr_lightning.apps.eval_app import main as eval_app
from pcsr_lightning.inference import budget
from pcsr_lightning.inference.budget import BUDGET_SAMPLES, BUDGET_STRATA, added_losses, longest_within, plan_budget
from pcsr_lightning.inference.gate import flatness_scores
from pcsr_lightning.inference.session import InferenceSession, upscale
from pcsr_lightning.inference.spec import BUDGET_CANDIDATES, GateSpec, RoutingSpec
from pcsr_lightning.measure.meter import FlopsMeter

TILE = 8



@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return pcsr_net().eval()


def gate(b, threshold=0.05, **options):
    return GateSpec(threshold, TILE, 2, budget=b, **options)


def test_the_envelope_and_the_prefix_by_hand():
    order = np.array([3, 0, 1, 2])  # flattest first
    strata = [np.array([3, 0]), np.array([1, 2])]
    sampled = np.array([True, False, True, False])  # tiles 0 and 2
    added = added_losses(order, sampled, strata, {0: 1.0, 2: 0.5})
    # tile 3: stratum 0's largest sample (1.0); tile 1: stratum 1's, at least the flatter stratum's (1.0)
    assert added.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert longest_within(added, 0.0) == 0 and longest_within(added, 0.99) == 0
    assert longest_within(added, 1.0) == 2 and longest_within(added, 2.0) == 4  # sums 1, 1, 2, 2
    assert longest_within(np.zeros(5), 0.0) == 5  # nothing to lose: everything fits


def test_the_budget_converts_db_to_skipped_tiles_as_stated(net, monkeypatch):
    """Known sample losses and error level: the number of skipped tiles follows from 10 log10(1 + D / MSE)."""
    lr = half_flat(96, 192)
    level, loss = 1e-3, 2.0  # every sampled tile loses 2.0 (summed squared difference over its HR pixels)
    monkeypatch.setattr(budget, "self_error", lambda *a, **k: ([level / budget.SELF_ERROR_SHARE], None))
    monkeypatch.setattr(budget, "sample_losses", lambda model, lr, s, tiles, *a, **k: ([loss] * len(tiles), None))
    hh, ww = 4 * lr.shape[-2], 4 * lr.shape[-1]
    scores = flatness_scores(lr, TILE)
    n_candidates = int((scores < 0.05).sum())
    assert n_candidates >= 2 * BUDGET_STRATA * BUDGET_SAMPLES
    for tiles in (0, 1, 3, 7):
        b = 10 * math.log10(1 + (tiles + 0.5) * loss / (level * hh * ww))  # room for tiles and a half
        plan = plan_budget(net, lr, 4, gate(b))
        skipped = int((~plan.active).sum())
        assert skipped == tiles, (b, skipped)
        assert plan.budget.estimate[0] <= b + 1e-9
        assert not bool((~plan.active & plan.budget.sampled).any())  # sampled tiles ran PCSR


def test_budget_zero_is_pcsr_exactly(net):
    lr = half_flat(96, 192)
    plain = upscale(net, lr, 4, RoutingSpec())
    gated = upscale(net, lr, 4, RoutingSpec(gate=gate(0.0)))
    assert gated.skipped_share() == 0 and torch.equal(gated.sr, plain.sr)
    assert gated.gate.budget.runs == []  # nothing sampled: a budget of 0 costs nothing


def test_a_huge_budget_skips_what_the_threshold_would_but_the_sample(net):
    lr = half_flat(96, 192)
    plan = plan_budget(net, lr, 4, gate(1e6))
    below = flatness_scores(lr, TILE) < 0.05
    sampled = plan.budget.sampled
    assert int(sampled.sum()) == min(int(below.sum()), BUDGET_STRATA * BUDGET_SAMPLES)
    assert torch.equal(~plan.active, below & ~sampled)
    threshold = upscale(net, lr, 4, RoutingSpec(gate=GateSpec(0.05, TILE, 2)))
    huge = upscale(net, lr, 4, RoutingSpec(gate=gate(1e6)))
    skipped = (below & ~sampled)[0].repeat_interleave(4 * TILE, 0).repeat_interleave(4 * TILE, 1)
    assert torch.equal(huge.classes[0] == net.num_classes, skipped)
    assert torch.allclose(huge.sr[0][:, skipped], threshold.sr[0][:, skipped], atol=1e-6)  # the same fill there


def test_an_exact_fill_skips_every_candidate(net, monkeypatch):
    """A fill equal to PCSR's output on the sample loses nothing: every candidate not sampled is skipped,
    however small the budget."""
    outputs, real_render = [], budget.render

    def render(*args, **kwargs):
        out = real_render(*args, **kwargs)
        outputs.append(out.sr.clamp(0, 1))
        return out

    monkeypatch.setattr(budget, "render", render)
    monkeypatch.setattr(budget, "fill_of", lambda model, lr, scale, fill: outputs[-1])
    lr = half_flat(96, 192)
    plan = plan_budget(net, lr, 4, gate(1e-6))
    below = flatness_scores(lr, TILE) < 0.05
    assert torch.equal(~plan.active, below & ~plan.budget.sampled)


def test_the_sample_runs_pcsr_as_the_gate_does(net):
    """A sampled tile's PCSR output is the gate's own on that tile: the same halo, the fill around it."""
    lr = half_flat(96, 192)
    tiles = [(3, 2), (0, 0), (11, 23)]  # inside, a corner, the far corner
    g = GateSpec(0.05, TILE, 2, fill="bicubic")
    losses, run = budget.sample_losses(net, lr, 4, tiles, g, 2, 0.0)
    scores = flatness_scores(lr, TILE)
    for (ty, tx), loss in zip(tiles, losses):
        active = torch.zeros_like(scores, dtype=torch.bool)
        active[0, ty, tx] = True
        plan = budget.plan_active(net, lr, 4.0, scores, active, 0.05, TILE, 2)
        prepared = budget.prepare(net, lr, 4.0, gate=plan)
        sr = budget.render(net, prepared, budget.route(net, prepared, 0.0), True).sr.clamp(0, 1)
        filled = budget.fill_of(net, lr, 4, "bicubic").clamp(0, 1)
        r, c = slice(ty * 4 * TILE, (ty + 1) * 4 * TILE), slice(tx * 4 * TILE, (tx + 1) * 4 * TILE)
        assert loss == pytest.approx(float((sr - filled).square().mean(1)[0, r, c].sum()), rel=1e-4, abs=1e-9)
    assert run.classified == len(tiles) * (4 * TILE) ** 2  # the MLPs ran on the sampled tiles only


def test_no_calibration_where_it_cannot_pay(net):
    """Few candidates on a small image: skipping them all would save less than the sample costs."""
    lr = half_flat(32, 48)
    assert not budget.calibration_pays(int((flatness_scores(lr, TILE) < 0.05).sum()), TILE, 2, (32, 48), 4)
    out = upscale(net, lr, 4, RoutingSpec(gate=gate(1e6)))
    assert out.skipped_share() == 0 and out.gate.budget.runs == []
    assert torch.equal(out.sr, upscale(net, lr, 4, RoutingSpec()).sr)


def test_a_texture_skips_nothing_within_a_small_budget(net):
    lr = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    plan = plan_budget(net, lr, 4, gate(0.05, threshold=10.0))  # every tile a candidate
    assert bool(plan.active.all())


def test_the_calibration_is_counted_in_the_flops(net):
    lr = half_flat(96, 192)
    out = upscale(net, lr, 4, RoutingSpec(gate=gate(1e6)))
    meter = FlopsMeter(net)
    parts = out.gate.counted_parts("paper", meter)
    assert parts["budget sample"] > 0 and parts["self-calibration"] > 0
    sample = next(r for r in out.gate.budget.runs if r.name == "budget sample")
    sampled = int(out.gate.budget.sampled.sum())
    assert sample.backbone_pixels >= sampled * TILE * TILE and sample.classified == sampled * (4 * TILE) ** 2
    per_pixel = sum(meter.network_per_pixel("paper").values())
    assert parts["budget sample"] >= per_pixel * sample.backbone_pixels
    assert set(parts) - set(out.gate.analytic_counts("paper")) == {"budget sample", "self-calibration"}


def test_the_session_calibrates_against_the_routings_k(net, monkeypatch):
    ks = []
    real = budget.plan_budget
    monkeypatch.setattr("pcsr_lightning.inference.session.plan_budget",
                        lambda model, lr, scale, g, k=0.0, threads=None: ks.append(k) or real(model, lr, scale, g, k))
    session = InferenceSession(net, half_flat(96, 192), 4)
    g = gate(0.05)
    session.run(RoutingSpec(0.0, gate=g))
    session.run(RoutingSpec(0.0, gate=g))
    session.run(RoutingSpec(1.0, gate=g))
    assert ks == [0.0, 1.0]  # once per k; the same k again reuses the plan


def test_budget_alone_bounds_its_candidates_by_the_default_and_round_trips():
    spec = RoutingSpec.build(skip_budget=0.05, skip_fill="linear")
    assert spec.gate == GateSpec(BUDGET_CANDIDATES, fill="linear", budget=0.05)
    assert RoutingSpec.build(**spec.flat()) == spec
    assert RoutingSpec.build(skip_flat=0.3, skip_budget=0.1).gate.threshold == 0.3
    assert RoutingSpec.build().gate is None


def test_a_fractional_scale_is_refused_before_any_work(net):
    with pytest.raises(ValueError, match=r"skip_budget needs an integer scale .* got x2.5"):
        gate(0.05).check_model(net, 2.5)


def photo_image() -> Image.Image:
    lr = half_flat(96, 192)[0]
    return Image.fromarray((lr * 255).round().byte().permute(1, 2, 0).numpy())


def test_cli_hydra_and_python_agree(tmp_path, capsys, monkeypatch):
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    folder, hr_dir = tmp_path / "in", tmp_path / "hr"
    folder.mkdir(), hr_dir.mkdir()
    photo_image().save(folder / "wave.png")
    hr = Image.fromarray(np.asarray(photo_image().resize((768, 384), Image.BICUBIC)))
    hr.save(hr_dir / "wave.png")
    options = {"skip_budget": 20.0, "skip_flat": 0.05, "skip_tile": 8, "skip_halo": 2}
    flags = ["--skip-budget", "20", "--skip-flat", "0.05", "--skip-tile", "8", "--skip-halo", "2"]
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", folder, "--output", tmp_path / "sr", *flags], capsys)
    assert code == 0, err
    model = pcsr_lightning.load(ckpt, device="cpu")
    api = model.upscale(photo_image(), **options)
    assert 0 < api.skipped_share < 1
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sr" / "wave.png")), np.asarray(api.image))

    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", hr_dir, "--k", "0", *flags, "--out",
                         tmp_path / "cli.csv"], capsys)
    assert code == 0, err
    code, err = run_app(eval_app, [f"eval.ckpt={ckpt}", f"eval.hr_dir={hr_dir}", "eval.skip_budget=20",
                                   "eval.skip_flat=0.05", "eval.skip_tile=8", "eval.skip_halo=2", "eval.ends=false",
                                   f"hydra.run.dir={tmp_path / 'job'}"], capsys, monkeypatch)
    assert code == 0, err

    def gated(path):
        return [r for r in csv.DictReader(open(path)) if r["skip_budget"] and r["image"] == "wave.png"]

    cli_rows, hydra_rows = gated(tmp_path / "cli.csv"), gated(tmp_path / "job" / "per_image.csv")
    assert len(cli_rows) == len(hydra_rows) == 1
    for rows in (cli_rows, hydra_rows):
        assert float(rows[0]["skip_budget"]) == 20
        # eval's LR is the HR's bicubic downscale, not the same image: compare the two eval paths exactly
    for key in ("psnr", "skipped_share", "gflops_paper"):
        assert cli_rows[0][key] == hydra_rows[0][key]
