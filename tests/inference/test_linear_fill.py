"""The gate's linear fill: the filter, its least-squares fit, the fill of skipped tiles, files, flags and FLOPs."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_skip_flat import half_flat

from factories import pcsr_net, save_tiny, tiny_config
from pcsr_lightning.apps.cli import main
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate
from pcsr_lightning.inference.gate import FILL_MACS_PER_HR_PIXEL, plan_skip
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.io.weights import load_model, save_model
from pcsr_lightning.models import LinearFill
from pcsr_lightning.training.fill import FillStatistics, fit_fill

FILL = {"_target_": "pcsr_lightning.models.LinearFill", "scale": 4, "radius": 2}


def perturbed(scale=4, seed=0, size=0.05):
    """A fill whose filters differ from bicubic's by random weights and biases."""
    g = torch.Generator().manual_seed(seed)
    fill = LinearFill(scale)
    fill.set_filters(fill.weight.reshape(scale * scale, -1) + size * torch.randn(scale * scale, 25, generator=g),
                     size * torch.randn(scale * scale, generator=g))
    return fill


def filled_config():
    return {**tiny_config(), "fill": dict(FILL)}


def filled_net(seed=1):
    """The tiny PCSR (CARN's mean, so the fill's image-range units are tested) with a perturbed fill."""
    torch.manual_seed(0)
    net = build_model(filled_config()).eval()
    net.fill.set_filters(perturbed(seed=seed).weight, perturbed(seed=seed).bias)
    return net


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_an_unfitted_fill_is_torchs_bicubic_borders_included(scale):
    lr = torch.rand(2, 3, 13, 17)
    want = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    torch.testing.assert_close(LinearFill(scale)(lr), want, atol=2e-6, rtol=0)
    fill = LinearFill(scale)
    assert fill.weight.numel() + fill.bias.numel() == scale * scale * 26 and fill.macs_per_hr_pixel() == 75
    assert not list(fill.parameters()), "fitted in closed form: no optimiser may move it"
    with pytest.raises(ValueError, match="scale"):
        LinearFill(0)


def test_a_filter_adding_the_centre_tap_adds_the_nearest_lr_pixel_at_every_phase():
    """The phases are laid out as the HR pixels of each LR pixel: a filter that adds its centre tap to
    bicubic at every phase adds the nearest-neighbour upscale."""
    lr = torch.rand(1, 3, 6, 7)
    fill = LinearFill(4)
    weight = fill.weight.reshape(16, 25).clone()
    weight[:, 12] += 1.0  # the centre of the 5x5 neighbourhood, every phase
    fill.set_filters(weight, torch.zeros(16))
    nearest = lr.repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(fill(lr), LinearFill(4)(lr) + nearest)


def test_statistics_merge_as_if_fitted_together():
    lr = half_flat(32, 48)
    hr = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False) + 0.01 * torch.rand(1, 3, 128, 192)
    parts = [FillStatistics(4), FillStatistics(4)]
    parts[0].add(lr[..., :16, :], hr[..., :64, :])
    parts[1].add(lr[..., 16:, :], hr[..., 64:, :])
    merged = FillStatistics.merged(parts)
    assert merged.pixels == parts[0].pixels + parts[1].pixels and merged.images == 2
    torch.testing.assert_close(merged.xtx, parts[0].xtx + parts[1].xtx)
    torch.testing.assert_close(merged.xty, parts[0].xty + parts[1].xty)
    with pytest.raises(ValueError, match="do not add up"):
        FillStatistics.merged([FillStatistics(4), FillStatistics(2)])


def test_the_fit_recovers_a_known_filter_and_sums_photo_by_photo():
    true = perturbed(seed=2)
    lr = torch.rand(3, 3, 30, 41)
    fill, stats = fit_fill([(x[None], true(x[None])) for x in lr], 4, below=float("inf"))
    torch.testing.assert_close(fill.weight, true.weight, atol=1e-5, rtol=0)
    torch.testing.assert_close(fill.bias, true.bias, atol=1e-5, rtol=0)
    assert stats.pixels == 3 * 3 * 30 * 41 and stats.images == 3
    bicubic, fitted = stats.rms_errors(stats.correction())
    assert bicubic > 0.01 and fitted < 1e-5  # the filter explains everything, bicubic does not
    together = FillStatistics(4, below=float("inf"))
    together.add(lr, true(lr))
    torch.testing.assert_close(together.xtx, stats.xtx) and torch.testing.assert_close(together.xty, stats.xty)


def test_the_fit_counts_only_flat_neighbourhoods():
    lr = half_flat()  # a smooth wave on the left, noise on the right
    hr = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    stats = FillStatistics(4)
    added = stats.add(lr, hr)
    assert 0 < added // 3 < lr.shape[-2] * lr.shape[-1] // 2 + lr.shape[-2] * 2
    fill = stats.solve()  # HR is bicubic there: the fit stays bicubic
    torch.testing.assert_close(fill(lr), hr, atol=1e-4, rtol=0)
    checker = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2).float().expand(1, 3, 8, 8)
    busy = FillStatistics(4)
    assert busy.add(checker, torch.rand(1, 3, 32, 32)) == 0  # |Laplacian| 4 everywhere: nothing flat
    with pytest.raises(ValueError, match="no flat LR pixel"):
        busy.solve()
    with pytest.raises(ValueError, match="3,4h,4w"):
        FillStatistics(4).add(lr, hr[..., :-1])


@pytest.mark.parametrize("batch", [1, 2])
def test_skipped_tiles_equal_the_models_linear_fill(batch):
    net = filled_net()
    lr = half_flat().repeat(batch, 1, 1, 1)
    out = upscale(net, lr, 4, skip_flat=0.05, skip_fill="linear")  # refinement on: skipped pixels stay as filled
    skipped = out.classes == net.num_classes
    assert 0.3 < out.skipped_share() < 0.7
    diff = (out.sr - net.fill(lr)).abs().amax(1)
    assert float(diff[skipped].max()) <= 2e-6
    bicubic = upscale(net, lr, 4, skip_flat=0.05)
    assert float((out.sr - bicubic.sr).abs().amax(1)[skipped].min()) > 0, "the fill must change the skipped pixels"
    assert torch.equal(out.classes, bicubic.classes)
    # without refinement (whose 3x3 means read the filled neighbours) the other pixels are the same PCSR
    raw, raw_bicubic = (upscale(net, lr, 4, refine=False, skip_flat=0.05, skip_fill=f) for f in ("linear", "bicubic"))
    assert torch.equal(raw.sr.permute(1, 0, 2, 3)[:, ~skipped], raw_bicubic.sr.permute(1, 0, 2, 3)[:, ~skipped])
    assert torch.equal(upscale(net, lr, 4, skip_flat=0.0, skip_fill="linear").sr, upscale(net, lr, 4).sr)


def test_the_plan_counts_the_fills_own_work(tmp_path):
    net = filled_net()
    lr = half_flat()
    linear = plan_skip(net, lr, 4, 0.05, fill="linear")
    bicubic = plan_skip(net, lr, 4, 0.05)
    n = linear.skipped_pixels()
    assert linear.analytic_counts("fvcore")["linear fill"] == n * 75 and linear.fill == "linear"
    assert bicubic.analytic_counts("paper")["bicubic fill"] == 2 * n * FILL_MACS_PER_HR_PIXEL
    model = load(save_model(tmp_path / "filled.ckpt", net, filled_config()), "cpu")
    up, up_bicubic = (model.upscale(lr, 4, skip_flat=0.05, skip_fill=f) for f in ("linear", "bicubic"))
    assert (up.gflops["fvcore"] - up_bicubic.gflops["fvcore"]) * 1e9 == pytest.approx(n * (75 - FILL_MACS_PER_HR_PIXEL))


def test_linear_asked_of_a_model_without_a_fill_or_at_another_scale_is_a_clear_error(tmp_path):
    plain = pcsr_net().eval()
    lr = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="has none"):
        upscale(plain, lr, 4, skip_flat=0.01, skip_fill="linear")
    with pytest.raises(ValueError, match="fitted for x4, not x3"):
        upscale(filled_net(), lr, 3, skip_flat=0.01, skip_fill="linear")
    with pytest.raises(ValueError, match="fill must be one of"):
        RoutingSpec.build(skip_flat=0.01, skip_fill="lanczos")
    path = save_tiny(tmp_path / "plain.ckpt")
    hr = tmp_path / "hr"
    hr.mkdir()
    Image.fromarray((torch.rand(32, 32, 3) * 255).byte().numpy()).save(hr / "a.png")
    with pytest.raises(ValueError, match="has none"):
        evaluate(EvalSettings(ckpt=str(path), hr_dir=str(hr), skip_flat=[0.01], skip_fill="linear"), log=lambda s: None)
    out = tmp_path / "out"
    assert main(["upscale", "--ckpt", str(path), "--input", str(hr), "--output", str(out), "--skip-flat", "0.01",
                 "--skip-fill", "linear"]) != 0
    assert not out.exists() or not any(out.iterdir())


def photos(folder, n=3, size=(96, 128), seed=0):
    folder.mkdir()
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        base = 0.4 + 0.2 * torch.rand(1, 3, size[0] // 16, size[1] // 16, generator=g)  # smooth: flat LR pixels
        img = F.interpolate(base, size=size, mode="bicubic", align_corners=False).clamp(0, 1)[0]
        Image.fromarray((img.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / f"p{i}.png")
    return folder


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors", ""])
def test_fit_fill_writes_a_model_that_carries_the_fill(tmp_path, capsys, suffix):
    src = save_tiny(tmp_path / "plain.safetensors")
    folder = photos(tmp_path / "photos")
    out = tmp_path / f"filled{suffix}"
    assert main(["fit-fill", str(src), str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "p0.png" in text and "(bicubic) ->" in text and "LinearFill(x4" in text
    assert "fit-fill 1/3 photos" in captured.err and "fit-fill 3/3 photos" in captured.err
    loaded = load_model(out)
    assert isinstance(loaded.model.fill, LinearFill) and loaded.meta["fill"]["photos"] == ["p0.png", "p1.png", "p2.png"]
    assert not torch.equal(loaded.model.fill.weight, LinearFill(4).weight), "the fill was fitted"
    plain = load_model(src).model
    for key, value in plain.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key  # the rest is untouched
    model = load(out, "cpu")
    assert model.fill_scale == 4 and "linear fill x4" in repr(model) and load(src, "cpu").fill_scale is None
    # the CLI runs with it; refuses to overwrite without --overwrite
    upscaled = tmp_path / "up"
    assert main(["upscale", "--ckpt", str(out), "--input", str(folder), "--output", str(upscaled),
                 "--skip-flat", "0.05", "--skip-fill", "linear"]) == 0
    assert len(list(upscaled.glob("*.png"))) == 3
    assert main(["fit-fill", str(src), str(folder), "--out", str(out)]) != 0
    assert "already exist" in capsys.readouterr().err


def test_fit_fill_refuses_an_original_network_missing_photos_and_its_own_input(tmp_path, capsys):
    folder = photos(tmp_path / "photos")
    original = save_tiny(tmp_path / "orig.ckpt", kind="original")
    assert main(["fit-fill", str(original), str(folder), "--out", str(tmp_path / "o.ckpt")]) != 0
    assert "original network" in capsys.readouterr().err
    src = save_tiny(tmp_path / "plain.ckpt")
    assert main(["fit-fill", str(src), str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.ckpt")]) != 0
    assert "not found" in capsys.readouterr().err
    assert main(["fit-fill", str(src), str(folder), "--out", str(src), "--overwrite"]) != 0
    assert not (tmp_path / "o.ckpt").exists() and load_model(src).model.fill is None


def test_eval_and_the_api_take_the_linear_fill(tmp_path):
    net = filled_net()
    path = save_model(tmp_path / "filled.ckpt", net, filled_config())
    hr = photos(tmp_path / "hr", n=1, size=(128, 128))
    records, failed = evaluate(EvalSettings(ckpt=str(path), hr_dir=str(hr), skip_flat=[0.0, 100.0],
                                            skip_fill="linear"), log=lambda s: None)
    assert failed == 0
    rows = [r for r in records if r.skip_flat is not None]
    assert [r.skipped_share for r in rows] == [0.0, 1.0]
    model = load(path, "cpu")
    lr = half_flat()
    sr, _ = model.super_resolve(lr, 4, RoutingSpec.build(skip_flat=100.0, skip_fill="linear"))
    torch.testing.assert_close(sr, net.fill(lr), atol=2e-6, rtol=0)
    image = model(lr, skip_flat=100.0, skip_fill="linear")
    torch.testing.assert_close(image, net.fill(lr).clamp(0, 1), atol=2e-6, rtol=0)
    assert build_model(filled_config()).fill.scale == 4


@pytest.mark.parametrize("fill", ["bicubic", "linear"])
def test_windows_and_fills_on_worker_threads_give_the_intra_op_result(fill):
    """Scattered busy tiles make many small windows: the small ones are encoded on worker threads, and the
    skipped runs filled there; the result must not depend on it."""
    net = filled_net()
    g = torch.Generator().manual_seed(3)
    lr = torch.full((1, 3, 256, 384), 0.5) + 0.01 * torch.rand(1, 3, 256, 384, generator=g)
    for ty, tx in ((0, 0), (4, 10), (8, 3), (12, 18), (15, 23), (10, 12)):  # busy 16x16 tiles far apart
        lr[..., ty * 16 : ty * 16 + 16, tx * 16 : tx * 16 + 16] = torch.rand(1, 3, 16, 16, generator=g)
    runs = {t: upscale(net, lr, 4, skip_flat=0.05, skip_halo=4, skip_fill=fill, threads=t) for t in (0, 3)}
    assert len(runs[0].gate.windows) >= 4 and 0.5 < runs[0].skipped_share() < 1
    assert torch.equal(runs[0].classes, runs[3].classes)
    torch.testing.assert_close(runs[0].sr, runs[3].sr, atol=1e-5, rtol=0)
