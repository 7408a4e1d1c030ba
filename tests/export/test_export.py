"""pcsr export: the graphs equal the routed path in PyTorch, and the written files give pcsr upscale's pixels
in ONNX Runtime and as a reloaded exported program, on two image sizes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from factories import tiny_config, tiny_model
from pcsr_lightning.apps.cli import main
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.export import runtime
from pcsr_lightning.export.exporter import DEFAULT_OPSET
from pcsr_lightning.export.graph import RoutedGraph
from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.inference.session import InferenceSession, upscale
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.images import read_image, write_png
from pcsr_lightning.io.weights import save_model

needs_onnxruntime = pytest.mark.skipif(
    runtime.onnxruntime is None or runtime.onnx is None,
    reason=f"onnx / onnxruntime not installed (the [export] extra: {runtime.INSTALL_HINT})")

SIZES = ((24, 32), (29, 21))  # LR sizes: two shapes, odd and even, neither square


def mixed_pcsr(num_classes: int = 2, backbone: str = "carn"):
    """A tiny PCSR whose classifier is sharpened, so a middle k routes a mix of classes (an untrained
    classifier's near-uniform probabilities send every pixel one way, leaving routing and refinement
    unexercised)."""
    model = tiny_model("pcsr", backbone, num_classes=num_classes)
    with torch.no_grad():
        model.classifier.linears[-1].weight.mul_(40)
    return model


def middle_k(model, lr: torch.Tensor, scale: float = 4.0) -> float:
    """The k sending about half the pixels to U_0: log of the median p_0 / p_last over log c_0 / c_last."""
    probs = InferenceSession(model, lr, scale).prepared().probs
    costs = cost_list(model, scale)
    return math.log(float((probs[..., 0] / probs[..., -1]).median())) / math.log(float(costs[0] / costs[-1]))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Two 8-bit PNG crops of a real photo, of the two SIZES."""
    folder = tmp_path_factory.mktemp("lr")
    photo = sample_photo("astronaut")
    paths = []
    for i, (h, w) in enumerate(SIZES):
        path = folder / f"lr{i}.png"
        write_png(photo[:, 100 + 40 * i : 100 + 40 * i + h, 150 : 150 + w], path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory, photos) -> dict[str, tuple[Path, float]]:
    """Model files and the k each exports at: a mixed 2-class and 3-class PCSR and the original."""
    folder = tmp_path_factory.mktemp("models")
    lr = torch.cat([read_image(p)[None, :, :20, :20] for p in photos])
    out = {}
    for name, m in (("pcsr2", 2), ("pcsr3", 3)):
        model = mixed_pcsr(m)
        path = save_model(folder / f"{name}.ckpt", model, tiny_config("pcsr", num_classes=m))
        out[name] = (path, middle_k(model, lr))
    out["original"] = (save_model(folder / "original.ckpt", tiny_model("original"), tiny_config("original")), 0.0)
    return out


def upscaled(ckpt: Path, photos: list[Path], k: float, out: Path) -> list[torch.Tensor]:
    """pcsr upscale's PNGs of ``photos`` as 8-bit levels."""
    assert main(["upscale", "--ckpt", str(ckpt), "--input", str(photos[0].parent), "--output", str(out),
                 "--k", repr(k)]) == 0
    return [runtime.to_levels(read_image(out / p.name)) for p in photos]


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("dense", [False, True])
def test_graph_equals_routed_path(num_classes, dense):
    """In PyTorch the graph gives the routed path's pixels and class map (batch 2, two sizes, mixed routing)."""
    model = mixed_pcsr(num_classes)
    for h, w in SIZES:
        lr = torch.rand(2, 3, h, w)
        k = middle_k(model, lr)
        ref = upscale(model, lr, 4.0, k=k)
        assert 0.2 < ref.heavy_share() < 0.8  # a real mix: routing and refinement both matter
        with torch.no_grad():
            sr, classes = RoutedGraph(model, 4, k, class_map=True, dense=dense)(lr)
        assert torch.equal(classes, ref.classes)
        assert (sr - ref.sr.clamp(0, 1)).abs().max() < 1e-5


@pytest.mark.parametrize("backbone", ["fsrcnn", "srresnet"])
def test_graph_equals_routed_path_on_other_backbones(backbone):
    model = mixed_pcsr(2, backbone)
    lr = torch.rand(1, 3, 14, 19)
    k = middle_k(model, lr)
    ref = upscale(model, lr, 4.0, k=k)
    with torch.no_grad():
        sr, classes = RoutedGraph(model, 4, k, class_map=True)(lr)
    assert torch.equal(classes, ref.classes)
    assert (sr - ref.sr.clamp(0, 1)).abs().max() < 1e-5


def test_graph_without_refinement_and_at_scale_3():
    model = mixed_pcsr(2)
    lr = torch.rand(1, 3, 15, 11)
    k = middle_k(model, lr, 3.0)
    ref = upscale(model, lr, 3.0, k=k, refine=False)
    with torch.no_grad():
        sr, classes = RoutedGraph(model, 3, k, refine=False, class_map=True)(lr)
    assert torch.equal(classes, ref.classes)
    assert (sr - ref.sr.clamp(0, 1)).abs().max() < 1e-5


def check_against_upscale(run, ckpt: Path, photos: list[Path], k: float, tmp_path: Path, class_map: bool) -> None:
    """``run(lr) -> outputs`` on each photo: within one 8-bit level of pcsr upscale's PNG on >= 99.9 % of the
    values, and (``class_map``) the class map of the same call through the Python API."""
    expected = upscaled(ckpt, photos, k, tmp_path / "upscaled")
    model = load(ckpt, "cpu")
    for path, levels in zip(photos, expected):
        lr = read_image(path)[None]
        outputs = run(lr)
        h, w = lr.shape[-2:]
        assert outputs[0].shape == (1, 3, 4 * h, 4 * w)
        diff = (runtime.to_levels(outputs[0][0]) - levels).abs()
        assert float((diff <= 1).float().mean()) >= 0.999, f"{path.name}: max {int(diff.max())} levels"
        if class_map:
            _, classes = model.super_resolve(lr, 4.0, RoutingSpec(k=k))
            assert torch.equal(outputs[1], classes)
            assert 0 < int((classes == 0).sum()) < classes.numel()


@needs_onnxruntime
@pytest.mark.parametrize("name,graph", [("pcsr2", "routed"), ("original", None),
                                        pytest.param("pcsr3", "routed", marks=pytest.mark.slow),
                                        pytest.param("pcsr2", "dense", marks=pytest.mark.slow)])
def test_onnx_in_onnxruntime_gives_upscale_pixels(models, photos, tmp_path, name, graph):
    ckpt, k = models[name]
    out = tmp_path / "model.onnx"
    args = ["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(out), "--k", repr(k)]
    is_pcsr = graph is not None
    assert main(args + (["--class-map", "--graph", graph] if is_pcsr else [])) == 0
    sess = runtime.session(out, threads=1)
    check_against_upscale(lambda lr: runtime.run_onnx(sess, lr), ckpt, photos, k, tmp_path, is_pcsr)
    meta = runtime.onnx_metadata(out)
    assert meta["onnx.opset"] == str(DEFAULT_OPSET)
    assert meta["torch.version"] == torch.__version__
    assert meta["onnx.version"] == runtime.onnx_version()
    assert meta["onnxruntime.checked_with"] == runtime.onnxruntime_version()
    assert meta["pcsr.scale"] == "4" and meta["pcsr.kind"] == ("pcsr" if is_pcsr else "original")
    if is_pcsr:
        assert float(meta["pcsr.k"]) == k and meta["pcsr.graph"] == graph and meta["pcsr.outputs"] == "sr,classes"
        ops = runtime.op_counts(out)
        assert ("NonZero" in ops) == (graph == "routed")


def program_runner(path):
    """The exported program at ``path``, re-loaded: lr -> its outputs as a tuple."""
    with open(path, "rb") as f:
        module = torch.export.load(f).module()

    def run(lr):
        with torch.no_grad():
            outputs = module(lr)
        return outputs if isinstance(outputs, tuple) else (outputs,)

    return run


@pytest.mark.parametrize("name", ["pcsr2", pytest.param("original", marks=pytest.mark.slow)])
def test_exported_program_reloaded_gives_upscale_pixels(models, photos, tmp_path, name):
    ckpt, k = models[name]
    out = tmp_path / "model.pt2"
    is_pcsr = name != "original"
    args = ["export", "--ckpt", str(ckpt), "--format", "exported-program", "--out", str(out), "--k", repr(k)]
    assert main(args + (["--class-map"] if is_pcsr else [])) == 0
    check_against_upscale(program_runner(out), ckpt, photos, k, tmp_path, is_pcsr)
    meta = runtime.program_metadata(out)
    assert meta["torch.version"] == torch.__version__ and meta["pcsr.scale"] == "4"


@pytest.mark.parametrize("extra,message", [
    (["--adaptive"], "not exportable: --adaptive"),
    (["--skip-flat", "0.1"], "not exportable: --skip-flat"),
    (["--scale", "2.5"], "not exportable: --scale 2.5"),
])
def test_what_does_not_export_is_refused_by_name(models, tmp_path, capsys, extra, message):
    out = tmp_path / "model.pt2"
    out.write_bytes(b"kept")
    ckpt, _ = models["pcsr2"]
    code = main(["export", "--ckpt", str(ckpt), "--format", "exported-program", "--out", str(out), "--overwrite",
                 *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert out.read_bytes() == b"kept"  # nothing written over


def test_bad_output_names_and_existing_files(models, tmp_path, capsys):
    ckpt, _ = models["original"]
    assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.pt2")]) == 2
    assert "is named *.onnx" in capsys.readouterr().err
    existing = tmp_path / "m.onnx"
    existing.write_bytes(b"kept")
    assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(existing)]) == 2
    assert "already exist" in capsys.readouterr().err and existing.read_bytes() == b"kept"
    assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "o.onnx"),
                 "--scale", "2"]) == 2
    assert "upscales x4 only" in capsys.readouterr().err


@needs_onnxruntime
@pytest.mark.slow
@pytest.mark.parametrize("name", ["carn-pcsr-phase1", "carn-x4"])
@pytest.mark.parametrize("fmt", ["onnx", "exported-program"])
def test_released_carn_exports_give_upscale_pixels(official_ckpts, tmp_path, name, fmt):
    """The released CARN-PCSR at k = 0 and CARN, on two crops of a real photo."""
    folder = tmp_path / "lr"
    photo = sample_photo("astronaut")
    photos = []
    for i, (h, w) in enumerate(((64, 80), (45, 97))):
        photos.append(write_png(photo[:, 60 * i : 60 * i + h, 200 : 200 + w], folder / f"lr{i}.png"))
    ckpt, is_pcsr = official_ckpts[name], name.startswith("carn-pcsr")
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt2")
    args = ["export", "--ckpt", str(ckpt), "--format", fmt, "--out", str(out), "--k", "0"]
    assert main(args + (["--class-map"] if is_pcsr else [])) == 0
    if fmt == "onnx":
        sess = runtime.session(out, threads=2)

        def run(lr):
            return runtime.run_onnx(sess, lr)
    else:
        run = program_runner(out)

    check_against_upscale(run, ckpt, photos, 0.0, tmp_path, is_pcsr)
