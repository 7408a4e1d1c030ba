"""Fuzzing the readers: random bytes, truncations and mutated headers of checkpoints, safetensors files,
model configs and images give a correct load or the reader's one documented error (``CheckpointError``,
``SafetensorsError``, ``ImageReadError``: all ValueError subclasses naming the file), never another
exception, and never a hang (each example has a deadline). Deterministic (``derandomize``, no example
database) and bounded, so the whole file runs in well under a minute."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bad_input_kit import TINY_CONFIG, tiny_model
from pcsr_lightning.apps.eval_app import check_types, floats
from pcsr_lightning.io.checkpoint import CheckpointError, build_model, save_checkpoint
from pcsr_lightning.io.images import ImageReadError, read_image
from pcsr_lightning.io.manifest import Manifest
from pcsr_lightning.io.safetensors_format import SafetensorsError, read_safetensors, write_safetensors
from pcsr_lightning.io.weights import load_model, save_model

FUZZ = settings(max_examples=300, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid(work) -> dict[str, bytes]:
    """One valid file of each kind, to truncate and mutate."""
    ckpt = save_checkpoint(work / "valid.ckpt", tiny_model(), TINY_CONFIG)
    st_path = save_model(work / "valid.safetensors", tiny_model(), TINY_CONFIG)
    small = write_safetensors(work / "small.safetensors", {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
                                                           "b": torch.ones(2, dtype=torch.int64)}, {"k": "v"})
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    images = {}
    for fmt in ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "PPM"):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt)
        images[fmt] = buf.getvalue()
    return {"ckpt": ckpt.read_bytes(), "safetensors": st_path.read_bytes(), "small": small.read_bytes(), **images}


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """``data`` with bytes overwritten at the given positions (modulo its length), then cut short."""
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)
CUTS = st.one_of(st.none(), st.integers(0, 1 << 20))


def load_or_refuse(path: Path, error=CheckpointError) -> None:
    try:
        loaded = load_model(path)
    except error as err:
        assert str(path) in str(err) or path.name in str(err), err  # the message names the file
    else:
        assert isinstance(loaded.model, torch.nn.Module)


# --- checkpoints ----------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes_as_a_checkpoint(work, data):
    path = work / "random.ckpt"
    path.write_bytes(data)
    load_or_refuse(path)


@FUZZ
@given(edits=EDITS, cut=CUTS, head=st.integers(0, 255))
def test_mutated_and_truncated_checkpoints(work, valid, edits, cut, head):
    path = work / "mutated.ckpt"
    # the zip's headers sit at its start and end: aim some edits there
    data = valid["ckpt"]
    edits = [*edits, (head, edits[0][1] if edits else 0), (len(data) - 1 - head, head)]
    path.write_bytes(mutate(data, edits, cut))
    load_or_refuse(path)


# --- safetensors ----------------------------------------------------------------------------------


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_mutated_and_truncated_safetensors(work, valid, edits, cut):
    path = work / "mutated.safetensors"
    data = valid["small"]
    # most edits land in the 8-byte length and the JSON header
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    path.write_bytes(mutate(data, [(p % header_end, v) for p, v in edits], cut))
    try:
        tensors, metadata = read_safetensors(path)
    except SafetensorsError as err:
        assert str(path) in str(err)
    else:
        assert all(isinstance(t, torch.Tensor) for t in tensors.values()) and isinstance(metadata, dict)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=4), max_leaves=12)


@FUZZ
@given(entries=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4), extra=st.binary(max_size=64))
def test_crafted_safetensors_headers(work, entries, extra):
    raw = json.dumps(entries).encode()
    path = work / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + extra)
    try:
        read_safetensors(path)
    except SafetensorsError as err:
        assert str(path) in str(err)


@FUZZ
@given(edits=EDITS, cut=CUTS)
def test_mutated_model_safetensors_load_or_are_refused(work, valid, edits, cut):
    path = work / "model.safetensors"
    path.write_bytes(mutate(valid["safetensors"], edits, cut))
    load_or_refuse(path)


# --- configs --------------------------------------------------------------------------------------


TARGETS = st.sampled_from(["pcsr_lightning.models.PCSR", "pcsr_lightning.models.CARN", "pcsr_lightning.models.FSRCNN",
                           "pcsr_lightning.models.OriginalSR", "os.system", "builtins.eval", ""])


@FUZZ
@given(key=st.sampled_from(sorted(TINY_CONFIG)), value=JSON_VALUES, target=TARGETS, drop=st.booleans())
def test_mutated_model_configs_build_or_are_refused(key, value, target, drop):
    config = json.loads(json.dumps(TINY_CONFIG))
    if drop:
        config.pop(key)
    else:
        config[key] = value
    if key == "_target_":
        config["_target_"] = target
    try:
        model = build_model(config)
    except CheckpointError:
        pass
    else:
        assert isinstance(model, torch.nn.Module)


@FUZZ
@given(text=st.one_of(st.text(max_size=64), st.builds(json.dumps, JSON_VALUES)))
def test_a_model_folders_config_json(work, valid, text):
    folder = work / "folder"
    folder.mkdir(exist_ok=True)
    (folder / "model.safetensors").write_bytes(valid["safetensors"])
    (folder / "config.json").write_text(text)
    load_or_refuse(folder)


@FUZZ
@given(text=st.one_of(st.text(max_size=64), st.builds(json.dumps, JSON_VALUES)))
def test_a_runs_manifest(work, text):
    run = work / "run"
    run.mkdir(exist_ok=True)
    (run / "manifest.json").write_text(text)
    try:
        Manifest.load(run)
    except ValueError as err:
        assert "manifest.json" in str(err)


@FUZZ
@given(node=st.dictionaries(st.sampled_from(["scale", "max_pixels", "adaptive", "crop", "metrics", "lr_dir",
                                             "skip_halo", "bogus"]), JSON_VALUES, max_size=4), k=JSON_VALUES)
def test_pcsr_eval_settings_name_their_key(node, k):
    try:
        floats(k, "eval.k")
        check_types(node)
    except ValueError as err:
        assert str(err).startswith("eval."), err


# --- images ---------------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=256), suffix=st.sampled_from([".png", ".jpg", ".tif", ".bmp", ".webp", ".ppm"]))
def test_random_bytes_as_an_image(work, data, suffix):
    path = work / f"random{suffix}"
    path.write_bytes(data)
    try:
        img = read_image(path, max_pixels=1 << 16)
    except ImageReadError as err:
        assert str(path) in str(err)
    else:
        assert img.dtype == torch.float32 and img.shape[0] == 3


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # Pillow describing a damaged TIFF's tags
@FUZZ
@given(fmt=st.sampled_from(["PNG", "JPEG", "TIFF", "BMP", "WEBP", "PPM"]), edits=EDITS, cut=CUTS,
       head=st.integers(0, 40))
def test_mutated_and_truncated_images(work, valid, fmt, edits, cut, head):
    path = work / f"mutated.{fmt.lower()}"
    data = valid[fmt]
    path.write_bytes(mutate(data, [*((p % 48, v) for p, v in edits[:4]), *edits[4:]], cut))
    try:
        img = read_image(path, max_pixels=1 << 16)
    except ImageReadError as err:
        assert str(path) in str(err)
    else:
        assert img.shape[0] == 3 and bool(torch.isfinite(img).all()) and 0 <= float(img.min()) <= float(img.max()) <= 1
