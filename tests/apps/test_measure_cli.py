"""pcsr flops, eval sweeps (CSV, plot, shares), the Hydra form, and the release-style counts."""

import csv

import pytest
import torch
from PIL import Image

from conftest import sample_photo
from pcsr_lightning.apps.cli import main
from pcsr_lightning.config import model_config as arch_config
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.evaluation.protocol import load_pair, paper_crop_size
from pcsr_lightning.inference.routed import prepare, route
from pcsr_lightning.inference.router import class_counts
from pcsr_lightning.io.checkpoint import load_checkpoint, save_checkpoint
from pcsr_lightning.measure.meter import build_arch
from pcsr_lightning.measure.metrics import psnr


def test_flops_cli_last_line_is_the_total(capsys):
    assert main(["flops", "--arch", "carn", "--original", "--lr-size", "32", "32"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1156448256"
    assert main(["flops", "--arch", "fsrcnn", "--lr-size", "32", "32", "--convention", "fvcore"]) == 0
    out = capsys.readouterr().out
    assert "all-light" in out and "all-heavy" in out
    # all-heavy, fvcore: backbone (PReLU counted once per element in both conventions) + (classifier +
    # heavy MLP) MACs on 128 x 128 pixels
    prelu = (48 + 12 + 12 + 48) * 32 * 32
    assert int(out.strip().splitlines()[-1]) == (20_471_808 - prelu) // 2 + prelu + 128 * 128 * (104 + 13_282)
    assert main(["flops", "--arch", "carn", "--original", "--lr-size", "8", "8", "--scale", "2"]) == 2
    assert "x4 only" in capsys.readouterr().err


@pytest.fixture
def fsrcnn_pair(tmp_path):
    torch.manual_seed(0)
    pcsr = save_checkpoint(tmp_path / "p.ckpt", build_arch("fsrcnn"), arch_config("fsrcnn"))
    orig = save_checkpoint(tmp_path / "o.ckpt", build_arch("fsrcnn", True), arch_config("fsrcnn", True))
    hr = tmp_path / "hr"
    hr.mkdir()
    for name in ("astronaut", "coffee"):
        img = (sample_photo(name)[:, :140, :150] * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(img).save(hr / f"{name}.png")
    return pcsr, orig, hr


def test_eval_sweep_with_original_plot_and_paper_crop(fsrcnn_pair, tmp_path):
    pcsr, orig, hr = fsrcnn_pair
    out, summary, plot = tmp_path / "per.csv", tmp_path / "sum.csv", tmp_path / "curve.png"
    args = ["eval", "--ckpt", str(pcsr), "--original-ckpt", str(orig), "--hr-dir", str(hr), "--k", "-1", "0", "2",
            "--crop", "paper", "--out", str(out), "--summary", str(summary), "--plot", str(plot)]
    assert main(args) == 0
    rows = list(csv.DictReader(out.open()))
    settings = [(r["setting"], r["k"]) for r in rows if r["image"] == "coffee.png"]
    assert settings == [("k", "-1.000000"), ("k", "0.000000"), ("k", "2.000000"), ("all-light", ""), ("all-heavy", ""),
                        ("original", "")]
    by = {(r["image"], r["setting"], r["k"]): r for r in rows}
    # --crop paper: LR 35x37 -> 32x32, so the original costs FSRCNN's known 32x32 total (test_flops)
    assert float(by[("coffee.png", "original", "")]["gflops_paper"]) == pytest.approx(0.468017152, abs=1e-6)
    light = by[("coffee.png", "all-light", "")]
    expected = (20_471_808 + 128 * 128 * (208 + 1_500)) / 1e9
    assert float(light["gflops_paper"]) == pytest.approx(expected, abs=1e-4)
    assert float(light["pct_paper"]) == pytest.approx(100 * expected / 0.468017152, abs=1e-3)
    assert float(light["pct_fvcore"]) != pytest.approx(float(light["pct_paper"]), abs=1)  # deconv convention
    mean = {(r["setting"], r["k"]): r for r in csv.DictReader(summary.open())}
    assert mean[("k", "-1.000000")]["images"] == "2"
    with Image.open(plot) as img:
        assert img.size == (1200, 720) and len(img.getcolors(1 << 16)) > 5


def test_paper_crop_sizes():
    assert [paper_crop_size(n) for n in (32, 35, 59, 60, 511)] == [32, 32, 32, 60, 508]


def test_eval_reads_paired_lr_dir(fsrcnn_pair, tmp_path, capsys):
    pcsr, _, hr = fsrcnn_pair
    lr = tmp_path / "lr"
    lr.mkdir()
    Image.open(hr / "coffee.png").resize((37, 35)).save(lr / "coffeex4.png")
    out = tmp_path / "per.csv"
    args = ["eval", "--ckpt", str(pcsr), "--hr-dir", str(hr), "--lr-dir", str(lr), "--out", str(out)]
    assert main(args) == 1
    assert "no LR image for astronaut.png" in capsys.readouterr().err
    assert [r["image"] for r in csv.DictReader(out.open())] == ["coffee.png", "mean"]
    assert main(args + ["--bicubic"]) == 1
    rows = {(r["image"], r["setting"]): r for r in csv.DictReader(out.open())}
    hr_img, lr_img = load_pair(hr / "coffee.png", 4, lr, None)
    want = psnr(imresize(lr_img[None], tuple(hr_img.shape[-2:]))[0], hr_img, 4)
    assert float(rows[("coffee.png", "bicubic")]["psnr"]) == pytest.approx(want, abs=1e-5)
    assert float(rows[("mean", "bicubic")]["gflops_paper"]) == 0


def test_hydra_multirun_over_k(fsrcnn_pair, tmp_path, monkeypatch):
    import sys

    from pcsr_lightning.apps.eval_app import main as app

    pcsr, _, hr = fsrcnn_pair
    sweep = tmp_path / "multi"
    argv = ["pcsr-eval", "-m", f"eval.ckpt={pcsr}", f"eval.hr_dir={hr}", "eval.k=0,1", f"hydra.sweep.dir={sweep}"]
    monkeypatch.setattr(sys, "argv", argv)
    app()
    ks = sorted(next(csv.DictReader((sweep / j / "summary.csv").open()))["k"] for j in ("eval.k=0", "eval.k=1"))
    assert ks == ["0.000000", "1.000000"]  # each job's folder is named after its overrides (paths left out)
    assert (sweep / "eval.k=0" / "curve.png").stat().st_size > 1000
    rows = list(csv.DictReader((sweep / "summary.csv").open()))  # the sweep's summary: every job's rows
    assert {(r["job"], r["eval.k"], r["setting"]) for r in rows} >= {("eval.k=0", "0", "k"), ("eval.k=1", "1", "k")}


def test_hydra_eval_sweeps_the_gate_and_its_fill(tmp_path, monkeypatch):
    import sys

    from factories import tiny_config
    from pcsr_lightning.apps.eval_app import main as app
    from pcsr_lightning.io.checkpoint import build_model
    from pcsr_lightning.io.weights import save_model

    config = {**tiny_config(), "fill": {"_target_": "pcsr_lightning.models.LinearFill", "scale": 4}}
    torch.manual_seed(0)
    net = build_model(config).eval()
    net.fill.set_filters(net.fill.weight, net.fill.bias + 0.05)  # not bicubic: the two jobs must differ
    ckpt = save_model(tmp_path / "filled.ckpt", net, config)
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray((torch.rand(64, 64, 3) * 255).byte().numpy()).save(hr / "a.png")
    sweep = tmp_path / "multi"
    argv = ["pcsr-eval", "-m", f"eval.ckpt={ckpt}", f"eval.hr_dir={hr}", "eval.skip_flat=100",
            "eval.skip_fill=bicubic,linear", f"hydra.sweep.dir={sweep}"]
    monkeypatch.setattr(sys, "argv", argv)
    app()
    psnrs = []
    for job in ("eval.skip_fill=bicubic,eval.skip_flat=100", "eval.skip_fill=linear,eval.skip_flat=100"):
        rows = [r for r in csv.DictReader((sweep / job / "summary.csv").open()) if r["skip_flat"]]
        assert rows and {r["skipped_share"] for r in rows} == {"1.000000"}, job
        psnrs.append(rows[0]["psnr"])
    assert psnrs[0] != psnrs[1]


def test_release_counts_on_carn(official_ckpts):
    """gflops_paper as the release counts it: the original exactly; PCSR = backbone + classifier Linear
    layers on all H*W + each sampler's Linear layers on its own pixels (2*q*in*out, no bias, ReLU free)."""
    from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate_image
    from pcsr_lightning.measure.meter import FlopsMeter

    hr = sample_photo("chelsea")
    lr = imresize(hr, (hr.shape[-2] // 4, hr.shape[-1] // 4))
    hr = hr[:, : lr.shape[-2] * 4, : lr.shape[-1] * 4]
    h, w = lr.shape[-2:]
    original = load_checkpoint(official_ckpts["carn-x4"])
    rec = evaluate_image(original, FlopsMeter(original.model), "c", hr, lr, EvalSettings("", ""))[0]
    per_lr_pixel = 1_156_448_256 // 1024  # the release's counter on 32x32, linear in the LR area
    assert round(rec.gflops_paper, 2) == round(per_lr_pixel * h * w / 1e9, 2)
    loaded = load_checkpoint(official_ckpts["carn-pcsr-phase1"])
    model = loaded.model
    settings = EvalSettings("", "", ks=[0.0, 1.0])
    records = evaluate_image(loaded, FlopsMeter(model), "c", hr, lr, settings)
    prepared = prepare(model, lr[None], 4)
    for rec, k in zip(records, (0.0, 1.0)):
        counts = class_counts(route(model, prepared, k), 2)
        linear = [[(56, 74), (74, 74), (74, 74), (74, 74), (74, 3)], [(56, 20), (20, 20), (20, 20), (20, 3)]]
        release = 477_634_560 * h * w // 1024 + 2 * h * w * 16 * (56 * 10 + 10 * 10 + 10 * 2)
        release += sum(2 * n * sum(a * b for a, b in layers) for n, layers in zip(counts, linear))
        assert rec.gflops_paper == pytest.approx(release / 1e9, rel=5e-3)
        assert 0 < counts[0] < h * w * 16
