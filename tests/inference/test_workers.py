"""The routed part on worker threads: same result as on the intra-op threads, thread settings restored."""

import json
import threading

import pytest
import torch

from conftest import sample_photo
from factories import routing_pcsr
from pcsr_lightning.apps.cli import main
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.inference import workers as workers_mod
from pcsr_lightning.inference.reference import class_map_agreement, upscale_reference
from pcsr_lightning.inference.refinement import refine, refine_in_place
from pcsr_lightning.inference.routed import prepare, render, route
from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.inference.session import upscale, upscale_forced
from pcsr_lightning.inference.workers import Workers, routed_threads
from pcsr_lightning.io.checkpoint import load_checkpoint


def test_routed_threads_default_env_and_devices(monkeypatch):
    monkeypatch.delenv(workers_mod.ENV, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert routed_threads() == 2  # one worker per intra-op thread
        torch.set_num_threads(1)
        assert routed_threads() == 0  # a single thread: the plain path, no worker
    finally:
        torch.set_num_threads(before)
    assert routed_threads(3) == 3 and routed_threads(0) == 0
    assert routed_threads(3, "cuda") == 0  # off the CPU: no workers
    monkeypatch.setenv(workers_mod.ENV, "0")
    assert routed_threads() == 0 and routed_threads(2) == 2  # the argument wins over the environment
    monkeypatch.setenv(workers_mod.ENV, "two")
    with pytest.raises(ValueError, match=workers_mod.ENV):
        routed_threads()
    with pytest.raises(ValueError, match=">= 0"):
        routed_threads(-1)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_workers_run_every_item_once_on_one_intra_op_thread(n):
    before = torch.get_num_threads()
    seen, threads, lock = [], set(), threading.Lock()

    def work(item, local):
        local.setdefault("calls", 0)
        local["calls"] += 1
        with lock:
            seen.append(item)
            threads.add((torch.get_num_threads(), torch.is_grad_enabled()))

    with torch.no_grad(), Workers(n) as workers:
        assert torch.get_num_threads() == (1 if n else before)
        workers.run(work, range(50))
    assert sorted(seen) == list(range(50))
    assert threads == {(1 if n else before, False)}  # grad mode follows the caller onto the workers
    assert torch.get_num_threads() == before


def test_workers_follow_the_callers_inference_mode():
    """Lightning validates under torch.inference_mode: tensors made there may be written only in that mode,
    which a new thread does not inherit."""
    model = routing_pcsr(2)
    lr = torch.rand(1, 3, 13, 17)
    with torch.inference_mode():
        plain = upscale(model, lr, 4, k=0.3, threads=0)
        assert torch.is_inference(plain.sr)
        for n in (2, 3):
            on_workers = upscale(model, lr, 4, k=0.3, threads=n)
            assert torch.equal(on_workers.classes, plain.classes) and torch.equal(on_workers.sr, plain.sr)

    modes = set()
    with torch.inference_mode(), Workers(2) as workers:
        workers.run(lambda item, local: modes.add(torch.is_inference_mode_enabled()), range(20))
    assert modes == {True}


def test_workers_restore_threads_and_raise_after_an_error():
    before = torch.get_num_threads()
    done = []

    def work(item, local):
        if item == 3:
            raise RuntimeError("block 3")
        done.append(item)

    with pytest.raises(RuntimeError, match="block 3"):
        with Workers(2) as workers:
            workers.run(work, range(1000))
    assert torch.get_num_threads() == before
    assert len(done) < 999  # the others stopped instead of running the rest


@pytest.mark.parametrize("m", [2, 3])
def test_worker_threads_give_the_intra_op_result(m):
    model = routing_pcsr(m)
    lr = torch.rand(2, 3, 13, 17)
    before = torch.get_num_threads()
    for scale in (4, 2.5):
        old = upscale(model, lr, scale, k=0.3, threads=0)
        ref = upscale_reference(model, lr, scale, k=0.3, chunk=97)
        for n in (1, 2, 3):
            for block in (None, 37):  # the default blocks (one core's budget on workers) and many small ones
                new = upscale(model, lr, scale, k=0.3, max_queries=block, threads=n)
                assert torch.equal(new.classes, old.classes) and torch.equal(new.classes, ref.classes)
                torch.testing.assert_close(new.sr, old.sr, atol=1e-6, rtol=0)  # float rounding at most
                torch.testing.assert_close(new.sr, ref.sr, atol=1e-5, rtol=0)
        assert torch.get_num_threads() == before
        for cls in (0, m - 1):
            torch.testing.assert_close(upscale_forced(model, lr, scale, cls, threads=2).sr,
                                       upscale_forced(model, lr, scale, cls, threads=0).sr, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_workers_in_half_precision_lose_no_block(dtype):
    """Blocks of one upsampler added on several workers at once: in float16 and bfloat16 torch's CPU
    index_add_ goes through a float copy of the whole output, so concurrent adds lost each other's sums
    (whole channels off by tens of levels in a few percent of calls). Many small blocks, many calls."""
    model = routing_pcsr(2)
    lr = torch.rand(1, 3, 24, 32)
    want = upscale(model, lr, 4, k=0.3, threads=0).sr
    model = model.to(dtype)
    for _ in range(24):
        out = upscale(model, lr.to(dtype), 4, k=0.3, max_queries=64, threads=3)
        worst = (out.sr.float() - want).abs().mean((0, 2, 3)).max()
        assert float(worst) < 0.02, f"a channel is off by {float(worst):.3f} on average"


def test_environment_picks_the_path(monkeypatch):
    model = routing_pcsr()
    lr = torch.rand(1, 3, 9, 11)
    calls = []
    real = workers_mod.Workers.__init__

    def spy(self, n):
        calls.append(n)
        real(self, n)

    monkeypatch.setattr(workers_mod.Workers, "__init__", spy)
    monkeypatch.setenv(workers_mod.ENV, "0")
    a = upscale(model, lr, 4)
    monkeypatch.setenv(workers_mod.ENV, "2")
    b = upscale(model, lr, 4)
    assert set(calls[: len(calls) // 2]) == {0} and set(calls[len(calls) // 2 :]) == {2}
    assert torch.equal(a.classes, b.classes)
    torch.testing.assert_close(a.sr, b.sr, atol=1e-6, rtol=0)


@pytest.mark.parametrize("band", [1, 3, 32])
@pytest.mark.parametrize("n", [0, 2])
def test_banded_refinement_on_workers_equals_dense(band, n):
    pred = torch.rand(2, 3, 37, 41)
    classes = (torch.rand(2, 37, 41) < 0.3).long()
    classes[1, :20] = 1  # an all-light band: skipped, still equal
    want = refine(pred, classes, 2)
    out, inline = pred.clone(), pred.clone()
    with Workers(n) as workers:
        refine_in_place(out, classes, 2, band=band, workers=workers)
    refine_in_place(inline, classes, 2, band=band)
    assert torch.equal(out, inline)  # bands in any order on any thread: the same sums
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)  # the dense form sums in another order


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_released_models_same_on_workers_and_intra_op_threads(official_ckpts, memory_format):
    hr = sample_photo("astronaut")[:, :192, :256]
    lr = imresize(hr, (48, 64))[None].contiguous(memory_format=memory_format)
    for name in ("carn-pcsr-phase1", "fsrcnn-pcsr-phase1"):
        model = load_checkpoint(official_ckpts[name]).model.to(memory_format=memory_format)
        prepared = {n: prepare(model, lr, 4, threads=n) for n in (0, 2)}
        torch.testing.assert_close(prepared[2].probs, prepared[0].probs, atol=1e-6, rtol=0)
        for k in (0.0, 0.5):
            classes = {n: route(model, prepared[n], k, threads=n) for n in (0, 2)}
            assert torch.equal(classes[2], classes[0]), (name, k)
            new, old = (render(model, prepared[n], classes[n], threads=n) for n in (2, 0))
            torch.testing.assert_close(new.sr, old.sr, atol=1e-6, rtol=0)
            ref = upscale_reference(model, lr, 4, k=k)
            agreement = class_map_agreement(new.classes, ref.classes, prepared[0].probs, cost_list(model, 4), k)
            assert agreement["only_near_ties_differ"], (name, k, agreement)


def test_bench_routed_threads_flag(tmp_path):
    from pcsr_lightning.io.checkpoint import build_model, save_checkpoint

    pcsr_cfg = {"_target_": "pcsr_lightning.models.PCSR",
                "backbone": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "group": 4, "scale": None},
                "upsampler_hidden": [[16, 16], [4]], "classifier_hidden": [8]}
    orig_cfg = {"_target_": "pcsr_lightning.models.OriginalSR",
                "network": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "group": 4, "scale": 4}}
    p = save_checkpoint(tmp_path / "p.ckpt", build_model(pcsr_cfg), pcsr_cfg)
    o = save_checkpoint(tmp_path / "o.ckpt", build_model(orig_cfg), orig_cfg)
    out = tmp_path / "bench.json"
    args = ["bench", "--pcsr-ckpt", str(p), "--original-ckpt", str(o), "--hr-size", "32x48", "--repeats", "1",
            "--json", str(out)]
    for n in (0, 2):
        assert main(args + ["--routed-threads", str(n), "--profile"]) == 0
        report = json.loads(out.read_text())
        assert report["routed_threads"] == n
        assert report["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert report["fast_vs_reference"]["classes_identical"] is True
        # the workers' blocks run on the profiled thread, so their kernels are named
        assert {"aten::addmm", "mkldnn::_linear_pointwise"} & {o["op"] for o in report["profile_routed"]["ops"]}
    assert main(args + ["--routed-threads", "-1"]) == 2
