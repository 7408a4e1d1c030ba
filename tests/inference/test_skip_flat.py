"""The flat-tile gate: scores, skipped tiles, exactness of the rest, class maps, FLOPs and the flags."""

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from factories import half_flat, pcsr_net, save_tiny
from pcsr_lightning.apps.cli import main
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate_image
from pcsr_lightning.inference.gate import (
    FILL_MACS_PER_HR_PIXEL,
    GATE_MACS_PER_LR_PIXEL,
    bicubic_rect,
    bicubic_taps,
    encode_active,
    flatness_scores,
    plan_skip,
    plan_windows,
)
from pcsr_lightning.inference.refinement import band_mask, refinement_mask
from pcsr_lightning.inference.router import class_counts
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.inference.tiling import receptive_radius
from pcsr_lightning.io.checkpoint import build_model, load_checkpoint, save_checkpoint
from pcsr_lightning.io.images import class_overlay
from pcsr_lightning.measure.meter import FlopsMeter
from pcsr_lightning.models import CARN, FSRCNN, PCSR


def hand_laplacian_scores(lr, tile, border):
    """The score written as loops: max over the tile + border of |4x - 4 neighbours| (replicate)."""
    _, _, h, w = lr.shape
    x = lr[0].double()

    def at(c, y, xx):
        return x[c, min(max(y, 0), h - 1), min(max(xx, 0), w - 1)]

    lap = torch.zeros(h, w, dtype=torch.float64)
    for y in range(h):
        for xx in range(w):
            lap[y, xx] = max(abs(4 * at(c, y, xx) - at(c, y - 1, xx) - at(c, y + 1, xx) - at(c, y, xx - 1)
                                 - at(c, y, xx + 1)) for c in range(3))
    ny, nx = math.ceil(h / tile), math.ceil(w / tile)
    out = torch.zeros(ny, nx, dtype=torch.float64)
    for ty in range(ny):
        for tx in range(nx):
            out[ty, tx] = lap[max(0, ty * tile - border): (ty + 1) * tile + border,
                              max(0, tx * tile - border): (tx + 1) * tile + border].max()
    return out


def test_gate_scores_by_hand():
    lr = torch.full((1, 3, 8, 12), 0.5)
    lr[0, 1, 2, 9] += 0.1  # one bump: |Laplacian| 0.4 on it, 0.1 on its 4 neighbours
    torch.testing.assert_close(flatness_scores(lr, 4, border=0)[0], torch.tensor([[0, 0, 0.4], [0, 0, 0]]))
    # grown by 2 pixels, the tiles below and to the left see the bump as well
    torch.testing.assert_close(flatness_scores(lr, 4, border=2)[0], torch.tensor([[0, 0.4, 0.4], [0, 0.4, 0.4]]))
    torch.testing.assert_close(flatness_scores(lr, 4, border=1)[0], torch.tensor([[0, 0.1, 0.4], [0, 0, 0.1]]))
    rough = torch.rand(1, 3, 21, 30)  # partial tiles at the right and bottom
    for tile, border in ((8, 2), (5, 0), (16, 3)):
        torch.testing.assert_close(flatness_scores(rough, tile, border)[0].double(),
                                   hand_laplacian_scores(rough, tile, border), atol=1e-6, rtol=0)
    # a constant shift (the mean normalisation) does not change the scores
    torch.testing.assert_close(flatness_scores(rough - 0.3, 8), flatness_scores(rough, 8), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", [4, 2.5])
def test_skipped_tiles_equal_the_bicubic_upscale(scale):
    model, lr = pcsr_net().eval(), half_flat()
    out = upscale(model, lr, scale, skip_flat=0.05)  # refinement on: it must leave skipped pixels alone
    skipped = out.classes == model.num_classes
    assert 0.3 < out.skipped_share() < 0.7, "the test needs both kinds of tiles"
    bicubic = F.interpolate(lr, size=out.sr.shape[-2:], mode="bicubic", align_corners=False)
    diff = (out.sr - bicubic).abs().amax(1)
    assert float(diff[skipped].max()) <= 2e-6  # float rounding of the matmuls against torch's kernel
    assert float(diff[~skipped].max()) > 1e-3  # the rest is PCSR, not bicubic: the test can fail


def test_bicubic_taps_are_torch_bicubic():
    x = torch.rand(3, 11, 17)
    for size in ((44, 68), (27, 40), (11, 17)):
        want = F.interpolate(x[None], size=size, mode="bicubic", align_corners=False)[0]
        rows, cols = bicubic_taps(11, size[0]), bicubic_taps(17, size[1])
        torch.testing.assert_close(bicubic_rect(x, rows, cols), want, atol=2e-6, rtol=0)
        # a rectangle on its own reads only the LR pixels its taps reach, and gives the same pixels
        (r0, r1), (c0, c1) = (2, size[0] - 3), (size[1] // 2, size[1] - 1)
        part = bicubic_rect(x, (rows[0][r0:r1], rows[1][r0:r1]), (cols[0][c0:c1], cols[1][c0:c1]))
        torch.testing.assert_close(part, want[:, r0:r1, c0:c1], atol=2e-6, rtol=0)


@pytest.mark.parametrize("backbone", [CARN(nf=8), FSRCNN(d=12, s=6, m=2, init="pytorch")])
def test_threshold_zero_is_pcsr_exactly(backbone):
    model = pcsr_net(backbone).eval()
    lr = torch.rand(2, 3, 40, 52)
    plain, gated = upscale(model, lr, 4), upscale(model, lr, 4, skip_flat=0.0)
    assert torch.equal(plain.sr, gated.sr) and torch.equal(plain.classes, gated.classes)
    assert gated.skipped_share() == 0.0 and plain.skipped_share() is None


@pytest.mark.parametrize("merge", [True, False])
def test_active_tiles_equal_pcsr_with_a_full_halo(merge):
    model, lr = pcsr_net().eval(), half_flat()
    plain = upscale(model, lr, 4, refine=False)
    gate = plan_skip(model, lr, 4, 0.05, merge=merge)
    assert gate.halo == receptive_radius(model.backbone) and 0 < len(gate.windows)
    if merge:
        assert gate.encoded_pixels < 64 * 96  # the backbone ran on less than the image
    out = upscale(model, lr, 4, refine=False, skip_flat=0.05)
    active = out.classes != model.num_classes
    assert torch.equal(out.classes[active], plain.classes[active])
    assert float((out.sr - plain.sr).abs().amax(1)[active].max()) <= 1e-5
    # features of the active tiles: equal with the full halo, not without one
    lr_norm = model.normalize(lr)
    with torch.no_grad():
        whole = model.encode(lr_norm)
        keep = gate.active.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, None].expand_as(whole)
        exact = encode_active(model, lr_norm, gate)
        short = encode_active(model, lr_norm, plan_skip(model, lr, 4, 0.05, halo=0, merge=merge))
    assert float((exact - whole).abs()[keep].max()) <= 1e-5
    assert float((short - whole).abs()[keep].max()) > 1e-3
    assert float(exact.abs()[~keep].max()) == 0 or merge  # unmerged windows compute the active tiles only


def test_windows_cover_the_active_tiles_once():
    g = torch.Generator().manual_seed(1)
    active = torch.rand(2, 9, 13, generator=g) < 0.3
    active[1, :4] = True
    h, w = 9 * 16 - 5, 13 * 16 - 7  # partial tiles at the edges
    for merge in (True, False):
        windows = plan_windows(active, (h, w), 16, 6, merge)
        cover = torch.zeros(2, h, w, dtype=torch.int32)
        for win in windows:
            y0, y1, x0, x1 = win.keep
            cy0, cy1, cx0, cx1 = win.crop
            assert cy0 <= y0 and y1 <= cy1 and cx0 <= x0 and x1 <= cx1
            # context of at least the halo on every side that is not the image border
            assert (y0 - cy0 >= 6 or cy0 == 0) and (cy1 - y1 >= 6 or cy1 == h)
            assert (x0 - cx0 >= 6 or cx0 == 0) and (cx1 - x1 >= 6 or cx1 == w)
            cover[win.image, y0:y1, x0:x1] += 1
        need = active.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :h, :w]
        assert bool((cover[need] == 1).all()) and int(cover.max()) == 1
        if not merge:
            assert len({(c[1] - c[0], c[3] - c[2]) for c in (win.crop for win in windows)}) == 1  # one batch shape
    # a large flat band is left out; scattered holes smaller than the halos are not worth a second window
    band = torch.ones(1, 9, 13, dtype=torch.bool)
    band[0, :5] = False
    band[0, 7, 3] = False
    (win,) = plan_windows(band, (h, w), 16, 6)
    assert win.keep == (80, h, 0, w) and win.crop == (74, h, 0, w)


def test_class_map_counts_and_overlay_mark_skipped_pixels():
    model, lr = pcsr_net().eval(), half_flat()
    m = model.num_classes
    gate = plan_skip(model, lr, 4, 0.05)
    out = upscale(model, lr, 4, skip_flat=0.05)
    # class M exactly on the HR pixels whose nearest LR pixel lies in a skipped tile (x4: a 64 x 64 block each)
    want = ~gate.active.repeat_interleave(64, 1).repeat_interleave(64, 2)
    assert torch.equal(out.classes == m, want)
    counts = class_counts(out.classes, m + 1)
    assert len(counts) == m + 1 and counts[m] == int(want.sum()) == gate.skipped_pixels()
    assert out.heavy_share() == counts[0] / sum(counts)  # shares are of every pixel, skipped ones included
    overlay = class_overlay(out.sr[0], out.classes[0], m)
    gray = out.sr[0].clamp(0, 1).mean(0)
    assert torch.equal(overlay[:, want[0]], gray[want[0]].expand(3, -1))
    assert not torch.equal(overlay[:, ~want[0]], gray[~want[0]].expand(3, -1))


def test_flops_lower_by_the_skipped_work():
    model, lr = pcsr_net().eval(), half_flat()
    m, (h, w) = model.num_classes, lr.shape[-2:]
    meter = FlopsMeter(model)
    for convention in ("paper", "fvcore"):  # the backbone's count is linear in the LR area
        per_pixel = meter.network_per_pixel(convention)
        whole = meter.network((h, w), convention)
        assert {n: round(v * h * w) for n, v in per_pixel.items()} == dict(whole)
    hr = torch.rand(3, 4 * h, 4 * w)
    settings = EvalSettings("", "", ks=[0.0], skip_flat=[0.0, 0.05])
    records = evaluate_image(load_like(model), meter, "x", hr, lr[0], settings)
    plain, zero, gated = records
    assert (plain.skip_flat, zero.skip_flat, gated.skip_flat) == (None, 0.0, 0.05)
    gate = plan_skip(model, lr, 4, 0.05)
    extra = h * w * GATE_MACS_PER_LR_PIXEL
    assert zero.psnr == plain.psnr and zero.skipped_share == 0.0
    assert zero.gflops_fvcore == pytest.approx(plain.gflops_fvcore + extra / 1e9, rel=1e-9)
    counts = class_counts(upscale(model, lr, 4, skip_flat=0.05).classes, m + 1)
    skipped = counts[m]
    backbone_saved = sum(meter.network_per_pixel("fvcore").values()) * (h * w - gate.encoded_pixels)
    classifier_saved = skipped * meter.per_query(model.classifier, "fvcore")
    plain_counts = class_counts(upscale(model, lr, 4).classes, m)
    upsamplers_saved = sum((a - b) * meter.per_query(u, "fvcore")
                           for a, b, u in zip(plain_counts, counts, model.upsamplers))
    want = plain.gflops_fvcore * 1e9 - backbone_saved - classifier_saved - upsamplers_saved + extra \
        + skipped * FILL_MACS_PER_HR_PIXEL
    assert gated.gflops_fvcore * 1e9 == pytest.approx(want, rel=1e-9)
    assert gated.gflops_fvcore < plain.gflops_fvcore and gated.gflops_paper < plain.gflops_paper
    assert gated.gflops_paper == pytest.approx(2 * gated.gflops_fvcore, rel=1e-6)  # Linear/conv only: 2 x MACs
    assert gated.skipped_share == pytest.approx(skipped / sum(counts))


def load_like(model):
    """A LoadedModel around ``model`` (what evaluate_image takes)."""
    from pcsr_lightning.io.checkpoint import LoadedModel

    return LoadedModel(model=model, config={}, kind="pcsr", meta={})


def test_adaptive_and_tiled_backbone_with_the_gate():
    model, lr = pcsr_net().eval(), half_flat()
    base = upscale(model, lr, 4, skip_flat=0.05)
    tiled = upscale(model, lr, 4, skip_flat=0.05, tile=24)  # each window on LR tiles of its own
    assert torch.equal(base.classes, tiled.classes) and float((base.sr - tiled.sr).abs().max()) <= 1e-5
    adaptive = upscale(model, lr, 4, skip_flat=0.05, adaptive=True)
    assert torch.equal(adaptive.classes == 2, base.classes == 2)
    everything = upscale(model, lr, 4, skip_flat=1e9)  # every tile skipped: bicubic everywhere
    assert everything.skipped_share() == 1.0
    with pytest.raises(ValueError, match="skip_flat must be a finite number >= 0"):
        upscale(model, lr, 4, skip_flat=-1.0)


CFG = {
    "_target_": "pcsr_lightning.models.PCSR",
    "backbone": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "group": 4, "scale": None},
    "upsampler_hidden": [[16, 16], [4]],
    "classifier_hidden": [8],
}


def test_cli_flags_parse_and_run(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "p.ckpt", build_model(CFG), CFG)
    photos = tmp_path / "photos"
    photos.mkdir()
    img = (half_flat(48, 64)[0] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).resize((256, 192), Image.BICUBIC).save(photos / "half.png")
    base = ["upscale", "--ckpt", str(ckpt), "--input", str(photos / "half.png")]
    assert main(base + ["--output", str(tmp_path / "up"), "--skip-flat", "0.05", "--class-map"]) == 0
    assert "skipped share" in capsys.readouterr().out and (tmp_path / "up" / "half_classes.png").is_file()
    for bad in (["--skip-flat", "-1"], ["--skip-flat", "nan"], ["--skip-flat", "0.05", "--skip-tile", "0"]):
        with pytest.raises(SystemExit) as exit_:  # a usage error before any work
            main(base + ["--output", str(tmp_path / "x"), *bad])
        assert exit_.value.code == 2
    summary = tmp_path / "summary.csv"
    assert main(["eval", "--ckpt", str(ckpt), "--hr-dir", str(photos), "--k", "0", "1", "--skip-flat", "0", "0.05",
                 "--skip-tile", "8", "--summary", str(summary)]) == 0
    rows = list(csv.DictReader(summary.open()))
    assert [(r["k"], r["skip_flat"]) for r in rows] == [
        ("0.000000", ""), ("1.000000", ""), ("0.000000", "0.000000"), ("1.000000", "0.000000"),
        ("0.000000", "0.050000"), ("1.000000", "0.050000")]
    assert rows[2]["psnr"] == rows[0]["psnr"] and float(rows[4]["skipped_share"]) > 0
    assert main(["compare", f"pcsr={summary}", "--table", str(tmp_path / "t.md")]) == 0  # a curve per threshold
    table = (tmp_path / "t.md").read_text()
    assert "pcsr skip=0.05" in table and "pcsr skip=0 " in table
    orig_cfg = {"_target_": "pcsr_lightning.models.OriginalSR",
                "network": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "group": 4, "scale": 4}}
    orig = save_checkpoint(tmp_path / "o.ckpt", build_model(orig_cfg), orig_cfg)
    report = tmp_path / "bench.json"
    assert main(["bench", "--pcsr-ckpt", str(ckpt), "--original-ckpt", str(orig), "--hr-size", "128x192",
                 "--hr-image", str(photos / "half.png"), "--repeats", "1", "--no-reference", "--no-ends",
                 "--skip-flat", "0", "0.05", "--skip-tile", "8", "--skip-halo", "rf", "2", "--json", str(report)]) == 0
    names = {r["name"]: r for r in json.loads(report.read_text())["rows"]}
    assert set(names) == {"original", "pcsr k=0", "pcsr k=0 skip=0 halo=rf", "pcsr k=0 skip=0 halo=2",
                          "pcsr k=0 skip=0.05 halo=rf", "pcsr k=0 skip=0.05 halo=2"}
    psnrs = [names[n]["psnr"] for n in ("pcsr k=0 skip=0 halo=rf", "pcsr k=0 skip=0 halo=2", "pcsr k=0")]
    assert psnrs[0] == psnrs[1] == psnrs[2]
    assert names["pcsr k=0 skip=0.05 halo=rf"]["skipped_share"] > 0 and names["pcsr k=0"]["skipped_share"] is None
    assert main(["bench", "--pcsr-ckpt", str(ckpt), "--original-ckpt", str(orig), "--hr-size", "512x512",
                 "--hr-image", str(photos / "half.png")]) == 2  # the photo is smaller than the size
    assert load_checkpoint(ckpt).is_pcsr


def test_worker_threads_give_the_same_gated_result():
    model, lr = pcsr_net().eval(), half_flat()
    one = upscale(model, lr, 4, skip_flat=0.05, threads=0)
    two = upscale(model, lr, 4, skip_flat=0.05, threads=2)
    assert 0 < one.skipped_share() < 1
    assert torch.equal(one.classes, two.classes)
    torch.testing.assert_close(one.sr, two.sr, atol=1e-5, rtol=0)


def test_skipped_pixels_are_neither_heavy_nor_refined_for_four_classes():
    model = PCSR(CARN(nf=8), [[16, 16], [12], [8], [4]], [8], rgb_mean=(0.3, 0.4, 0.5)).eval()
    m = model.num_classes
    out = upscale(model, half_flat(), 4, k=-2.0, skip_flat=0.05)  # k < 0: mostly the heavy classes
    skipped = out.classes == m
    assert bool(skipped.any()) and bool((out.classes < m // 2).any())
    assert out.heavy_share() == pytest.approx(float((out.classes < m // 2).float().mean()))
    # a skipped pixel next to a heavy one keeps its bicubic value; the same masks band by band
    classes = torch.full((1, 12, 12), m)
    classes[0, :, 6:] = 0
    mask = refinement_mask(classes, m, skipped=True)
    assert not bool(mask[classes == m].any())
    for r0, r1 in ((1, 5), (5, 11)):
        assert torch.equal(band_mask(classes[0], m, r0, r1, skipped=True), mask[0, r0:r1])


def test_srmodel_takes_skip_flat(tmp_path):
    model = load(save_tiny(tmp_path / "pcsr.safetensors"), "cpu")
    image = half_flat()[0]
    plain, gated = model.upscale(image), model.upscale(image, skip_flat=0.05)
    assert plain.skipped_share is None and 0.3 < gated.skipped_share < 0.7
    assert int((gated.classes == model.num_classes).sum()) > 0
    assert all(gated.gflops[c] < plain.gflops[c] for c in gated.gflops)
    assert torch.equal(model(image, skip_flat=0.0), model(image))  # threshold 0 runs every tile
    assert torch.equal(model(image, skip_flat=0.05), gated.image)
    for bad in ({"skip_flat": -1.0}, {"skip_flat": math.inf}, {"skip_tile": 0}, {"skip_halo": -2}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RoutingSpec.build(**bad)
