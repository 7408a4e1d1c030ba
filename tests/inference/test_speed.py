"""Fast path vs reference, tiled backbone vs whole image, and the bench command (no timing asserts)."""

import json

import pytest
import torch
from torch import nn

from conftest import sample_photo
from pcsr_lightning.apps.cli import main
from pcsr_lightning.bench.inputs import parse_size, photo_mosaic
from pcsr_lightning.bench.run import Row, ratio_rows
from pcsr_lightning.bench.timing import paired_ratio, time_rounds
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.inference import kernels
from pcsr_lightning.inference.kernels import BlockedTail
from pcsr_lightning.inference.reference import class_map_agreement, near_ties, upscale_reference
from pcsr_lightning.inference.refinement import refine, refine_in_place
from pcsr_lightning.inference.routed import prepare
from pcsr_lightning.inference.router import cost_list, route_by_cost
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.inference.tiling import encode_tiled, receptive_radius
from pcsr_lightning.io.checkpoint import load_checkpoint, save_checkpoint
from pcsr_lightning.measure.metrics import psnr
from pcsr_lightning.models import CARN, FSRCNN, PCSR
from pcsr_lightning.models.mlp import MLP


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_fast_path_equals_reference_on_released_models_up_to_near_ties(official_ckpts, memory_format):
    # Both paths in the same layout. Folding sums the first layer in another order than the loop, so a
    # pixel whose two best scores are within a few roundings may change class; nothing else may.
    hr = sample_photo("astronaut")[:, :192, :256]
    lr = imresize(hr, (48, 64))[None].contiguous(memory_format=memory_format)
    for name in ("carn-pcsr-phase1", "fsrcnn-pcsr-phase1"):
        model = load_checkpoint(official_ckpts[name]).model.to(memory_format=memory_format)
        prepared = prepare(model, lr, 4)
        for k in (0.0, 0.5):
            fast, ref = upscale(model, lr, 4, k=k), upscale_reference(model, lr, 4, k=k)
            agreement = class_map_agreement(fast.classes, ref.classes, prepared.probs, cost_list(model, 4), k)
            assert agreement["only_near_ties_differ"], (name, k, agreement)
            assert agreement["differing"] <= agreement["near_ties"] <= 1e-4 * agreement["pixels"], (name, k, agreement)
            assert abs(psnr(fast.sr[0], hr, 4) - psnr(ref.sr[0], hr, 4)) <= 0.01, (name, k)


def test_near_ties_are_the_only_pixels_allowed_to_differ():
    costs = torch.tensor([0.7, 0.3])
    probs = torch.tensor([[0.5, 0.5], [0.5 + 1e-7, 0.5 - 1e-7], [0.6, 0.4], [0.7, 0.3]])
    assert near_ties(probs, costs, 0.0).tolist() == [True, True, False, False]
    # k = 1 weighs by cost: p0 / 0.7 vs p1 / 0.3 tie on the last row.
    assert near_ties(probs, costs, 1.0).tolist() == [False, False, False, True]
    fast, ref = torch.tensor([1, 0, 0, 0]), torch.tensor([0, 0, 1, 0])
    agreement = class_map_agreement(fast, ref, probs, costs, 0.0)
    assert agreement == {"differing": 2, "near_ties": 2, "pixels": 4, "only_near_ties_differ": False}
    agreement = class_map_agreement(fast, torch.tensor([0, 0, 0, 0]), probs, costs, 0.0)
    assert agreement["only_near_ties_differ"] and agreement["differing"] == 1


@pytest.mark.parametrize("block", [7, 4096])
def test_fast_path_equals_reference_on_random_model_any_block(block):
    model = PCSR(CARN(nf=16), [[24, 24], [8]], [8], rgb_mean=(0.4, 0.4, 0.4)).eval()
    lr = torch.rand(2, 3, 11, 14)
    for scale in (4, 2.7):
        fast = upscale(model, lr, scale, k=0.2, max_queries=block)
        ref = upscale_reference(model, lr, scale, k=0.2, chunk=50)
        assert torch.equal(fast.classes, ref.classes)
        torch.testing.assert_close(fast.sr, ref.sr, atol=1e-5, rtol=0)


@pytest.mark.parametrize("hidden", [[24, 24, 24], [8, 8], []])
def test_blocked_tail_layouts_equal_the_mlp(hidden):
    mlp = MLP(12, 3, hidden).eval()
    x = torch.randn(50, 12)
    first = mlp.linears[0]
    with torch.no_grad():
        want = mlp(x).t()
        for query_major, onednn in ((True, False), (False, False), (True, True)):
            if onednn and not kernels.onednn_linear_available():
                continue
            tail = BlockedTail(mlp, 64, x, query_major=query_major, onednn=onednn)
            assert tail.onednn == (onednn and len(hidden) > 0)  # a single Linear is all folded
            pre = tail.first(50)
            torch.addmm(first.bias, x, first.weight.t(), out=pre)
            torch.testing.assert_close(tail(pre), want, atol=1e-5, rtol=0)


def test_onednn_is_the_cpu_float32_rule():
    x = torch.zeros(4, 4)
    available = kernels.onednn_linear_available()
    assert kernels.uses_onednn(x) == available
    assert not kernels.uses_onednn(x.double()) and not kernels.uses_onednn(x.bfloat16())
    mlp = MLP(4, 3, [24]).eval()  # wide enough to run query-major
    assert BlockedTail(mlp, 8, x).onednn == available
    assert not BlockedTail(mlp, 8, x, query_major=False).onednn  # feature-major (thin classifiers) stays BLAS


def test_route_by_cost_class_major_equals_last_dim():
    probs = torch.softmax(torch.randn(2, 500, 3), -1)
    probs[0, :10] = torch.tensor([0.25, 0.25, 0.5])  # ties between the two heavier classes
    costs = torch.tensor([0.5, 0.3, 0.2])
    last = route_by_cost(probs, costs, 0.7)
    assert torch.equal(last, route_by_cost(probs.transpose(1, 2).contiguous(), costs, 0.7, dim=1))
    scores = probs / costs**0.7
    assert torch.equal(last, 2 - scores.flip(-1).argmax(-1))


@pytest.mark.parametrize("band", [1, 3, 32])
def test_banded_refinement_equals_dense(band):
    classes = (torch.rand(2, 31, 40) < 0.2).long()
    pred = torch.rand(2, 3, 31, 40)
    out = pred.clone()
    refine_in_place(out, classes, 2, band=band)
    want = refine(pred, classes, 2)
    assert not torch.equal(want, pred)  # the mask is not empty: the test can fail
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    untouched = pred.clone()
    refine_in_place(untouched, torch.zeros_like(classes), 2, band=band)  # all heavy: nothing to refine
    assert torch.equal(untouched, pred)


@pytest.mark.parametrize("backbone", [CARN(nf=8), FSRCNN(d=12, s=6, m=2, init="pytorch")])
def test_tiled_backbone_equals_whole_image(backbone):
    model = PCSR(backbone, [[16], [4]], []).eval()
    lr = torch.rand(1, 3, 53, 71)
    radius = receptive_radius(model.backbone)
    with torch.no_grad():
        whole = model.encode(model.normalize(lr))
        tiled = encode_tiled(model, model.normalize(lr), tile=16)
        short = encode_tiled(model, model.normalize(lr), tile=16, overlap=0)
        assert (tiled - whole).abs().max() <= 1e-4
        assert (short - whole).abs().max() > 1e-3  # without context the seams show: the test can fail
        sr_whole, sr_tiled = upscale(model, lr, 4), upscale(model, lr, 4, tile=16)
    assert radius > 0
    assert torch.equal(sr_whole.classes, sr_tiled.classes)
    assert (sr_whole.sr - sr_tiled.sr).abs().max() <= 1 / 255


def test_receptive_radius_is_the_architectures_even_where_the_weights_silence_paths():
    dead = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 5, padding=2))
    with torch.no_grad():
        dead[0].bias.fill_(-100.0)  # every ReLU closed for inputs in [0, 1]: no gradient reaches the input
        dead[2].weight[:, :, [0, -1]] = 0.0  # the second conv's outer rows unused by these weights
    assert receptive_radius(dead) == 1 + 2  # the architecture's: 3x3 then 5x5
    counted = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    counted[1].running_mean.fill_(1e3)  # a batch norm that would shut the ReLUs
    assert receptive_radius(counted) == 2 and counted[1].running_mean[0] == 1e3  # the module itself untouched
    assert float(dead[0].bias.detach()[0]) == -100.0


def test_receptive_radius_and_the_gate_work_under_a_callers_inference_mode():
    def convs():
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))

    with torch.inference_mode():
        assert receptive_radius(convs()) == 2  # the probe's gradient is allowed inside a caller's inference mode
        made_inside = convs()  # its tensors are inference tensors
    assert receptive_radius(made_inside) == 2
    model, lr = PCSR(CARN(nf=8), [[16], [4]], []).eval(), torch.rand(1, 3, 40, 52)
    plain = upscale(model, lr, 4)
    with torch.inference_mode():  # a fresh backbone: no radius cached yet
        gated, tiled = upscale(model, lr, 4, skip_flat=0.0), upscale(model, lr, 4, tile=16)
    assert torch.equal(gated.sr, plain.sr) and torch.equal(tiled.classes, plain.classes)


def test_parse_size_and_mosaic():
    assert parse_size("64x96") == (64, 96)
    with pytest.raises(ValueError, match="HxW"):
        parse_size("64")
    img = photo_mosaic((300, 520))
    assert img.shape == (3, 300, 520) and 0 <= float(img.min()) and float(img.max()) <= 1
    assert float(img.std()) > 0.05  # real texture, not a constant
    rows = ratio_rows([Row("original", 10.0, 30.0, None, 1.0, [10.0]), Row("pcsr k=0", 5.0, 30.1, 0.4, 1.0, [5.0])])
    assert rows[1][2] == "0.500"


def test_time_rounds_interleaves_and_pairs():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "ref")}
    times = time_rounds(fns, torch.device("cpu"), {"a": 3, "b": 3, "ref": 1}, warmup=1)
    assert calls == ["a", "b", "ref", "a", "b", "ref", "a", "b", "a", "b"]
    assert [len(times[n]) for n in ("a", "b", "ref")] == [3, 3, 1]
    with pytest.raises(ValueError, match="repeats"):
        time_rounds(fns, torch.device("cpu"), 0)
    # Drift that hits both sides alike cancels in the paired ratio, not in the ratio of medians.
    assert paired_ratio([5.0, 10.0, 20.0], [10.0, 20.0, 40.0]) == 0.5
    rows = ratio_rows([Row("original", 20.0, 30.0, None, 1.0, [10.0, 20.0, 40.0]),
                       Row("pcsr", 5.0, 30.0, 0.4, 1.0, [5.0, 10.0, 20.0])])
    assert rows[1][2] == "0.500"


def test_bench_command_writes_json(tmp_path, capsys, monkeypatch):
    pcsr_cfg = {
        "_target_": "pcsr_lightning.models.PCSR",
        "backbone": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "group": 4, "scale": None},
        "upsampler_hidden": [[16, 16], [4]],
        "classifier_hidden": [8],
    }
    orig_cfg = {
        "_target_": "pcsr_lightning.models.OriginalSR",
        "network": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "group": 4, "scale": 4},
    }
    from pcsr_lightning.io.checkpoint import build_model

    p = save_checkpoint(tmp_path / "p.ckpt", build_model(pcsr_cfg), pcsr_cfg)
    o = save_checkpoint(tmp_path / "o.ckpt", build_model(orig_cfg), orig_cfg)
    out = tmp_path / "bench.json"
    args = ["bench", "--pcsr-ckpt", str(p), "--original-ckpt", str(o), "--hr-size", "32x48", "--repeats", "1"]
    assert main(args + ["--k", "0", "1", "--profile", "--json", str(out)]) == 0
    err = capsys.readouterr().err  # progress per stage: a call per variant, then every timed call
    assert "warm-up 1/" in err and "timing 1/" in err and "in all" in err
    report = json.loads(out.read_text())
    prof = report["profile_routed"]
    products = {"aten::addmm", "mkldnn::_linear_pointwise"}
    assert products & {o["op"] for o in prof["ops"]} and 0 < prof["matmul_share"] < 1
    assert prof["ops"] == sorted(prof["ops"], key=lambda o: -o["self_ms"])
    for key in ("ms_original", "ms_backbone", "ms_pcsr", "ms_reference", "psnr_original", "psnr_pcsr", "psnr_reference",
                "ratio_pcsr"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["fast_vs_reference"]["classes_identical"] is True
    assert report["memory_format"] == "channels_last"  # auto on CPU: what pcsr upscale runs
    check = report["fast_vs_reference"]
    assert check["class_map"]["differing"] == 0 and check["class_map"]["only_near_ties_differ"]
    assert check["speedup_routed"] > 0 and check["ms_routed_fast"] > 0 and check["ms_routed_reference"] > 0
    assert set(report["peak_memory_mb"]) >= {"original", "pcsr k=0", "pcsr k=1", "reference k=0"}
    bf16 = ["--precision", "bf16", "--no-reference", "--memory-format", "contiguous", "--json", str(out)]
    assert main(args + bf16) == 0
    assert json.loads(out.read_text())["memory_format"] == "contiguous"
    assert main(args[:-4] + ["--hr-size", "30x47"]) == 2  # not divisible by the scale: clear error
    assert main(args + ["--reference-repeats", "0"]) == 2
    assert main(["bench", "--pcsr-ckpt", str(o), "--original-ckpt", str(o), "--hr-size", "32x48"]) == 2
    # The allocator's settings change every time measured: the report names them, the table says what they
    # do to the memory column.
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    quick = args + ["--no-reference", "--no-ends", "--json", str(out)]
    assert main(quick) == 0
    assert "GLIBC_TUNABLES" not in capsys.readouterr().out
    assert json.loads(out.read_text())["machine"]["glibc_tunables"] == ""
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
    assert main(quick) == 0
    assert "note: GLIBC_TUNABLES=glibc.malloc.mmap_max=0: where it keeps freed memory" in capsys.readouterr().out
    assert json.loads(out.read_text())["machine"]["glibc_tunables"] == "glibc.malloc.mmap_max=0"


def test_upscale_cli_tiled_reports_memory(tmp_path, capsys):
    cfg = {
        "_target_": "pcsr_lightning.models.PCSR",
        "backbone": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "group": 4, "scale": None},
        "upsampler_hidden": [[16], [4]],
        "classifier_hidden": [],
    }
    from PIL import Image

    from pcsr_lightning.io.checkpoint import build_model

    ckpt = save_checkpoint(tmp_path / "p.ckpt", build_model(cfg), cfg)
    img = (sample_photo("chelsea")[:, :40, :56] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).save(tmp_path / "cat.png")
    base = ["upscale", "--ckpt", str(ckpt), "--input", str(tmp_path / "cat.png")]
    assert main(base + ["--output", str(tmp_path / "whole")]) == 0
    assert main(base + ["--output", str(tmp_path / "tiled"), "--tile", "16", "--report-memory"]) == 0
    assert "peak memory" in capsys.readouterr().out
    from pcsr_lightning.io.images import read_image

    diff = (read_image(tmp_path / "whole" / "cat.png") - read_image(tmp_path / "tiled" / "cat.png")).abs().max()
    assert diff <= 1 / 255
    with pytest.raises(SystemExit) as refused:  # a usage error, before any work
        main(base + ["--output", str(tmp_path / "x"), "--tile", "-1"])
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
    assert main(base + ["--output", str(tmp_path / "nchw"), "--memory-format", "contiguous"]) == 0
    diff = (read_image(tmp_path / "whole" / "cat.png") - read_image(tmp_path / "nchw" / "cat.png")).abs().max()
    assert diff <= 1 / 255  # the layout changes rounding only


def test_l2_size_read_from_sysfs_with_fallback(tmp_path, monkeypatch):
    from pcsr_lightning.inference import cache

    assert [cache.parse_bytes(t) for t in ("1024K", "2M", "512\n")] == [1 << 20, 2 << 20, 512]
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                                                 (3, "Unified", "32768K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (folder / name).write_text(f"{value}\n")
    assert cache.read_l2_bytes(tmp_path) == 1 << 20
    monkeypatch.setattr(cache.os, "sysconf_names", {})  # neither sysfs nor sysconf: None, then the fallback
    assert cache.read_l2_bytes(tmp_path / "missing") is None
    assert cache.l2_bytes_per_core() > 0
    assert cache.cpu_cache_budget(threads=3) == 3 * cache.l2_bytes_per_core()


def test_blocks_and_bands_follow_the_cache(monkeypatch):
    from pcsr_lightning.inference import kernels, refinement

    for budget in (1 << 20, 4 << 20):
        monkeypatch.setattr(kernels, "cpu_cache_budget", lambda: budget)
        monkeypatch.setattr(refinement, "cpu_cache_budget", lambda: budget)
        factor = kernels.ONEDNN_BLOCK_FACTOR if kernels.onednn_linear_available() else 1
        assert kernels.block_queries(torch.zeros(1), 74) == factor * budget // (4 * 74)
        assert kernels.block_queries(torch.zeros(1, dtype=torch.bfloat16), 74) == budget // (2 * 74)
        assert kernels.block_queries(torch.zeros(1, dtype=torch.float64), 74) == budget // (8 * 74)
        band_bytes_per_row = refinement.BAND_ARRAYS * 3 * 1920 * 4
        assert refinement.band_rows(1920) == max(refinement.MIN_BAND_ROWS, budget // band_bytes_per_row)
    assert kernels.block_queries(torch.zeros(1), 10**9) == kernels.MIN_BLOCK_QUERIES  # never degenerate
    assert refinement.band_rows(10**9) == refinement.MIN_BAND_ROWS


def test_memory_format_choice():
    from pcsr_lightning.inference.layout import as_input, choose_memory_format, format_name, in_memory_format

    assert choose_memory_format("cpu") == torch.channels_last
    assert choose_memory_format("cpu", "contiguous") == torch.contiguous_format
    assert format_name(choose_memory_format("cpu", "channels_last")) == "channels_last"
    with pytest.raises(ValueError, match="memory_format"):
        choose_memory_format("cpu", "nhwc")
    model = in_memory_format(FSRCNN(d=8, s=4, m=1), torch.channels_last)
    assert model.head_conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert as_input(torch.rand(1, 3, 5, 6), torch.channels_last).is_contiguous(memory_format=torch.channels_last)
