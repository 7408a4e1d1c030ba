"""pcsr_lightning.load and SRModel: one call on PIL, numpy or tensors, same pixels as the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import pcsr_lightning
from conftest import sample_photo
from factories import save_tiny, tiny_model
from pcsr_lightning.apps.cli import main
from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.measure.meter import FlopsMeter


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray((sample_photo("chelsea")[:, :40, :56] * 255).round().byte().permute(1, 2, 0).numpy())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"pcsr": save_tiny(root / "pcsr.safetensors"), "original": save_tiny(root / "orig.ckpt", "original")}


@pytest.mark.parametrize("kind", ["pcsr", "original"])
def test_every_input_type_comes_back_as_itself(files, photo, kind):
    model = pcsr_lightning.load(files[kind], device="cpu")
    out = model(photo)
    assert isinstance(out, Image.Image) and out.size == (224, 160) and out.mode == "RGB"
    array = np.array(photo)
    as_uint8 = model(array)
    assert as_uint8.dtype == np.uint8 and as_uint8.shape == (160, 224, 3)
    np.testing.assert_array_equal(as_uint8, np.asarray(out))
    as_float = model(array.astype(np.float32) / 255)
    assert as_float.dtype == np.float32 and as_float.min() >= 0 and as_float.max() <= 1
    assert np.abs(as_float * 255 - as_uint8).max() <= 0.5 + 1e-3  # the same image, rounded
    chw = torch.from_numpy(array).permute(2, 0, 1)
    assert model(chw).dtype == torch.uint8 and model(chw).shape == (3, 160, 224)
    batch = model(torch.stack([chw, chw]).float() / 255)
    assert batch.shape == (2, 3, 160, 224) and batch.dtype == torch.float32
    assert float(batch.min()) >= 0 and float(batch.max()) <= 1


def test_the_same_pixels_as_pcsr_upscale(files, photo, tmp_path):
    photo.save(tmp_path / "cat.png")
    for kind, path in files.items():
        out = tmp_path / f"out-{kind}"
        assert main(["upscale", "--ckpt", str(path), "--input", str(tmp_path / "cat.png"), "--output", str(out),
                     "--k", "0.5"]) == 0
        model = pcsr_lightning.load(path, device="cpu")
        np.testing.assert_array_equal(np.asarray(model(photo, k=0.5)), np.asarray(Image.open(out / "cat.png")))


def test_upscale_reports_classes_share_and_gflops(files, photo):
    model = pcsr_lightning.load(files["pcsr"], device="cpu")
    result = model.upscale(photo, k=0.0)
    lr = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 255
    routed = upscale(tiny_model(), lr, 4.0)
    assert torch.equal(result.classes, routed.classes[0])
    assert result.heavy_share == pytest.approx(routed.heavy_share())
    counts = torch.bincount(routed.classes.flatten(), minlength=2).tolist()
    meter = FlopsMeter(tiny_model())
    assert result.gflops == pytest.approx({c: meter.image((40, 56), 4.0, counts, c) / 1e9 for c in ("fvcore", "paper")})
    original = pcsr_lightning.load(files["original"], device="cpu").upscale(photo)
    assert original.classes is None and original.heavy_share is None and original.gflops["paper"] > 0


def test_the_model_describes_itself(files):
    pcsr = pcsr_lightning.load(files["pcsr"], device="cpu")
    assert (pcsr.kind, pcsr.scale, pcsr.num_classes) == ("pcsr", None, 2)
    assert pcsr.supports_half and pcsr.supports_bfloat16
    torch.testing.assert_close(pcsr.cost_list(), cost_list(tiny_model(), 4.0))
    original = pcsr_lightning.load(files["original"], device="cpu")
    assert (original.kind, original.scale, original.num_classes) == ("original", 4, 1)
    with pytest.raises(ValueError, match="no cost list"):
        original.cost_list()
    assert "kind=pcsr" in repr(pcsr) and "x4" in repr(original)


def test_the_layout_users_get_is_the_commands_one(files):
    model = pcsr_lightning.load(files["original"], device="cpu")
    conv = next(m for m in model.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    nchw = pcsr_lightning.load(files["original"], device="cpu", memory_format="contiguous")
    conv = next(m for m in nchw.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_works_and_keeps_the_float32_cost_list(files, photo, dtype):
    full = pcsr_lightning.load(files["pcsr"], device="cpu")
    half = pcsr_lightning.load(files["pcsr"], device="cpu", dtype=dtype)
    torch.testing.assert_close(half.cost_list(), full.cost_list())
    torch.testing.assert_close(half.cost_list(2.5), full.cost_list(2.5))  # a scale first asked after the cast
    a, b = (np.asarray(m(photo), dtype=np.float64) for m in (full, half))
    assert np.abs(a - b).mean() < 3  # of 255
    assert half.upscale(photo).gflops == pytest.approx(full.upscale(photo).gflops)


def test_errors_name_the_argument(files, photo):
    with pytest.raises(ValueError, match="^device 'tpu'"):
        pcsr_lightning.load(files["pcsr"], device="tpu")
    with pytest.raises(ValueError, match="^dtype must be"):
        pcsr_lightning.load(files["pcsr"], device="cpu", dtype="int8")
    with pytest.raises(ValueError, match="^memory_format must be"):
        pcsr_lightning.load(files["pcsr"], device="cpu", memory_format="nhwc")
    model = pcsr_lightning.load(files["pcsr"], device="cpu")
    with pytest.raises(ValueError, match="^scale must be a finite number > 1"):
        model(photo, scale=1)
    with pytest.raises(ValueError, match="^the cost knob k"):
        model(photo, k=float("nan"))
    with pytest.raises(ValueError, match="^image must be RGB"):
        model(torch.rand(4, 8, 8))
    with pytest.raises(ValueError, match="non-finite"):
        model(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="^image must be a PIL image"):
        model([[0.5]])
    with pytest.raises(ValueError, match="^tile must be an integer >= 0"):
        model(photo, tile=-1)
    original = pcsr_lightning.load(files["original"], device="cpu")
    with pytest.raises(ValueError, match="upscales x4 only, got scale=3"):
        original(photo, scale=3)


def test_any_scale_for_pcsr(files, photo):
    model = pcsr_lightning.load(files["pcsr"], device="cpu")
    assert model(photo, scale=2.5).size == (140, 100)
