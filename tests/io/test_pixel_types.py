"""Integers mean what they hold: every integer pixel type is scaled by its own range or refused naming
the type (TIFF, PGM, numpy, torch); a checkpoint's tensors have the kind of number their parameter needs,
and a model config's means and scales are finite and typed when the model is loaded."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pcsr_lightning
from bad_input_kit import TINY_CONFIG, run_cli, save_tiny_ckpt, tiny_model
from pcsr_lightning.io.checkpoint import CheckpointError, build_model, save_checkpoint
from pcsr_lightning.io.images import ImageReadError, pil_to_raw, read_image
from pcsr_lightning.io.weights import load_model


def write_tiff(path: Path, array: np.ndarray) -> Path:
    """A baseline grey TIFF of ``array``'s own integer type (signed or not), uncompressed, with the
    SampleFormat tag saying which (Pillow itself writes every integer image as signed int32)."""
    a = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    data = a.tobytes()
    signed = 2 if np.issubdtype(a.dtype, np.signedinteger) else 1
    tags = [(256, 3, a.shape[1]), (257, 3, a.shape[0]), (258, 3, a.dtype.itemsize * 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 0), (277, 3, 1), (278, 3, a.shape[0]), (279, 4, len(data)), (339, 3, signed)]
    data_at = 8 + 2 + 12 * len(tags) + 4
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        value = data_at if tag == 273 else value
        out += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else
                                                     struct.pack("<I", value))
    path.write_bytes(out + struct.pack("<I", 0) + data)
    return path


def ramp(dtype, low: int, high: int) -> np.ndarray:
    return np.linspace(low, high, 16 * 16).reshape(16, 16).round().astype(dtype)


@pytest.mark.parametrize("dtype, peak", [(np.uint8, 255), (np.uint16, 65535)])
def test_unsigned_tiffs_are_scaled_by_their_own_range(tmp_path, dtype, peak):
    img = read_image(write_tiff(tmp_path / "x.tif", ramp(dtype, 0, peak // 2)))
    assert math.isclose(float(img.max()), (peak // 2) / peak, rel_tol=1e-6) and float(img.min()) == 0


@pytest.mark.parametrize("dtype, name", [(np.int8, "signed int8"), (np.int16, "signed int16"),
                                         (np.int32, "signed int32"), (np.uint32, "uint32")])
def test_signed_and_wide_integer_tiffs_are_refused_naming_the_type(tmp_path, dtype, name):
    path = write_tiff(tmp_path / "x.tif", ramp(dtype, 0, 100))
    with pytest.raises(ImageReadError, match=f"x.tif: its pixels are {name}"):
        read_image(path)


def test_a_16_bit_pgm_is_scaled_by_65535(tmp_path):
    Image.fromarray(ramp(np.uint16, 0, 60000)).save(tmp_path / "x.pgm")
    assert math.isclose(float(read_image(tmp_path / "x.pgm").max()), 60000 / 65535, rel_tol=1e-6)


def test_a_32_bit_image_of_no_stated_type_is_refused(tmp_path):
    with pytest.raises(ImageReadError, match="32-bit integers"):
        pil_to_raw(Image.fromarray(ramp(np.int32, 0, 300)))


def test_the_cli_names_a_refused_tiff_and_processes_the_others(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_tiff(photos / "signed.tif", ramp(np.int16, -3000, 3000))
    write_tiff(photos / "deep.tif", ramp(np.uint16, 0, 65535))
    code, err = run_cli(["upscale", "--ckpt", save_tiny_ckpt(tmp_path), "--input", photos, "--output",
                         tmp_path / "sr"], capsys)
    assert code == 1 and "signed.tif: its pixels are signed int16" in err
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["deep.png"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return pcsr_lightning.load(save_tiny_ckpt(tmp_path_factory.mktemp("m")), device="cpu")


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64, np.bool_])
def test_numpy_arrays_of_integer_types_without_a_range_are_refused(model, dtype):
    with pytest.raises(ValueError, match=f"image dtype {np.dtype(dtype)} is not a pixel type with a known range"):
        model(np.zeros((8, 8, 3), dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint32, torch.bool])
def test_tensors_of_integer_types_without_a_range_are_refused(model, dtype):
    with pytest.raises(ValueError, match=f"image dtype {dtype} is not a pixel type with a known range"):
        model(torch.zeros(3, 8, 8, dtype=dtype))


def test_uint16_arrays_are_scaled_by_65535_and_given_back_as_uint16(model):
    deep = np.full((8, 8, 3), 30000, dtype=np.uint16)
    low = np.full((8, 8, 3), 30000 // 257, dtype=np.uint8)
    out16, out8 = model(deep), model(low)
    assert out16.dtype == np.uint16 and out16.max() <= 65535
    # the same picture in both depths gives the same result within 8-bit rounding
    assert np.abs(out16.astype(np.float64) / 65535 - out8.astype(np.float64) / 255).max() < 2 / 255


def test_an_integer_tensor_where_a_float_weight_belongs_is_refused_naming_it(tmp_path, capsys):
    net = tiny_model()
    state = net.state_dict()
    key = "classifier.layers.0.weight"
    state[key] = state[key].round().to(torch.int32)
    path = tmp_path / "ints.ckpt"
    torch.save({"format": "pcsr-lightning", "format_version": 1, "kind": "pcsr", "model": TINY_CONFIG,
                "state_dict": state, "meta": {}}, path)
    with pytest.raises(CheckpointError, match=f"tensor '{key}' is torch.int32 where the model's is torch.float32"):
        load_model(path)
    code, err = run_cli(["convert", path, "--out", tmp_path / "o.safetensors"], capsys)
    assert code == 2 and key in err and not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("change, where", [
    ({"rgb_mean": [0.4, float("nan"), 0.4]}, "model.rgb_mean[1]"),
    ({"rgb_mean": [0.4, float("inf"), 0.4]}, "model.rgb_mean[1]"),
    ({"rgb_mean": [0.4, 0.4]}, "model.rgb_mean: rgb_mean must be a list of three finite numbers"),
    ({"rgb_mean": "0.4"}, "model.rgb_mean: rgb_mean must be a list of three finite numbers"),
    ({"rgb_mean": [0.4, True, 0.4]}, "model.rgb_mean: rgb_mean must be a list of three finite numbers"),
])
def test_a_config_with_a_bad_mean_is_refused_at_load_naming_the_key(tmp_path, change, where):
    config = {**TINY_CONFIG, **change}
    with pytest.raises(CheckpointError, match=re.escape(f"at {where}")):
        build_model(config)
    path = tmp_path / "bad.ckpt"
    save_checkpoint(path, tiny_model(), config)
    with pytest.raises(CheckpointError, match="bad.ckpt"):
        load_model(path)


@pytest.mark.parametrize("scale", [0.5, 1, "4", float("nan"), True])
def test_an_original_networks_scale_is_typed(scale):
    config = {"_target_": "pcsr_lightning.models.OriginalSR", "rgb_mean": [0.0, 0.0, 0.0],
              "network": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "scale": scale}}
    with pytest.raises(CheckpointError, match="model.network.scale"):
        build_model(config)
