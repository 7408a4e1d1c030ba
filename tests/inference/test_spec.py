"""The routing spec: one check per option, the same message from every entry point, and the API taking
every option the CLI takes with the CLI's pixels; the inference session equal to the one-shot path."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from PIL import Image

import pcsr_lightning
from bad_input_kit import run_app, run_cli, save_tiny_ckpt
from conftest import sample_photo
from pcsr_lightning.apps.eval_app import main as eval_app
from pcsr_lightning.bench.run import BenchSettings
from pcsr_lightning.evaluation.evaluate import EvalSettings
from pcsr_lightning.inference.session import InferenceSession, upscale
from pcsr_lightning.inference.spec import GateSpec, RoutingSpec

# (flat option, bad value, the one message every entry point gives)
BAD = [
    ("k", "nan", "the cost knob k must be a finite number, got nan"),
    ("tile", "-1", "tile must be an integer >= 0 (LR pixels; 0 = the whole image), got -1"),
    ("skip_flat", "-1", "skip_flat must be a finite number >= 0 (0 runs every tile), got -1"),
    ("skip_tile", "0", "skip_tile must be an integer >= 1 (LR pixels), got 0"),
    ("skip_halo", "-2", "skip_halo must be None (the receptive radius) or an integer >= 0 (LR pixels), got -2"),
    ("skip_gate", "sobel", "the gate's scorer must be one of ['laplacian', 'learned'], got 'sobel'"),
    ("skip_fill", "lanczos", "the gate's fill must be one of ['bicubic', 'linear'], got 'lanczos'"),
    ("skip_budget", "-0.5", "skip_budget must be None or a finite number of dB >= 0 (0 runs every tile), got -0.5"),
    ("skip_budget", "inf", "skip_budget must be None or a finite number of dB >= 0 (0 runs every tile), got inf"),
]
FLAG = {"k": "--k", "tile": "--tile", "skip_flat": "--skip-flat", "skip_tile": "--skip-tile",
        "skip_halo": "--skip-halo", "skip_gate": "--gate", "skip_fill": "--skip-fill",
        "skip_budget": "--skip-budget"}


def python_value(option: str, text: str):
    if option in ("skip_gate", "skip_fill"):
        return text
    return float(text) if option in ("k", "skip_flat", "skip_budget") else int(text)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_ckpt(tmp_path_factory.mktemp("spec"))


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A photo's texture on the left, flat grey on the right: the gate skips some tiles, not all."""
    img = (sample_photo("chelsea")[:, :28, :36] * 255).round().byte().permute(1, 2, 0).numpy().copy()
    img[:, 18:] = 128
    return Image.fromarray(img)


def message_of(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("option, text, message", BAD)
def test_one_message_per_option_from_every_entry_point(ckpt, photo, tmp_path, capsys, monkeypatch, option, text,
                                                       message):
    value = python_value(option, text)
    gated = {} if option in ("k", "tile", "skip_flat", "skip_budget") else {"skip_flat": 0.1}
    assert message_of(lambda: RoutingSpec.build(**gated, **{option: value})) == message
    model = pcsr_lightning.load(ckpt, device="cpu")
    assert message_of(lambda: model(photo, **gated, **{option: value})) == message
    assert message_of(lambda: model.upscale(photo, **gated, **{option: value})) == message
    if option == "tile":  # eval has no backbone tile; the bench has
        eval_kwargs = None
    elif option == "k":
        eval_kwargs = {"ks": [value]}
    elif option == "skip_flat":
        eval_kwargs = {"skip_flat": [value]}
    elif option == "skip_budget":  # a gate of its own: no threshold needed
        eval_kwargs = {option: value}
    else:
        eval_kwargs = {"skip_flat": [0.1], option: value}
    if eval_kwargs is not None:
        assert message_of(lambda: EvalSettings(ckpt=str(ckpt), hr_dir=str(tmp_path), **eval_kwargs)) == message
        key = "k" if option == "k" else option
        overrides = [f"eval.{key}={text}"] + ([] if option in ("k", "skip_flat", "skip_budget") else
                                              ["eval.skip_flat=0.1"])
        code, err = run_app(eval_app, [f"eval.ckpt={ckpt}", f"eval.hr_dir={tmp_path}", *overrides,
                                       f"hydra.run.dir={tmp_path / 'job'}"], capsys, monkeypatch)
        assert code == 2 and message in err and not (tmp_path / "job").exists(), err
    bench_kwargs = {"ks": [value]} if option == "k" else {"skip_flat": [value]} if option == "skip_flat" else \
        {"skip_halo": [value]} if option == "skip_halo" else {option: value}
    bench = BenchSettings(str(ckpt), str(ckpt), (64, 64), **bench_kwargs)
    assert message_of(bench.check) == message
    args = ["upscale", "--ckpt", ckpt, "--input", tmp_path, "--output", tmp_path / "sr", FLAG[option], text]
    code, err = run_cli(args, capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "sr").exists()


def test_the_spec_is_frozen_and_round_trips_its_flat_options():
    spec = RoutingSpec.build(k=0.5, tile=32, skip_flat=0.2, skip_tile=8, skip_halo=4, skip_fill="linear")
    assert spec.gate == GateSpec(0.2, 8, 4, "laplacian", "linear")
    assert RoutingSpec.build(**spec.flat()) == spec
    assert RoutingSpec.build(**RoutingSpec().flat()) == RoutingSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.k = 1.0
    assert spec.with_k(None).adaptive and spec.with_k(2).k == 2.0 and not spec.with_k(2).adaptive
    with pytest.raises(TypeError, match=re.escape("unknown routing option(s) ['skip']")):
        RoutingSpec.of(skip=0.1)
    with pytest.raises(TypeError, match="not both"):
        RoutingSpec.of(spec, k=1.0)
    with pytest.raises(ValueError, match="adaptive must be true or false"):
        RoutingSpec(adaptive="yes")
    with pytest.raises(ValueError, match="tile must be an integer"):
        RoutingSpec(tile=2.5)


def test_the_api_takes_every_option_the_cli_takes_and_gives_its_pixels(ckpt, photo, tmp_path, capsys):
    """skip_tile and skip_halo included; the CLI's PNG equals the API's image for the same options."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo.save(folder / "cat.png")
    options = {"k": 0.3, "tile": 12, "skip_flat": 0.02, "skip_tile": 8, "skip_halo": 3}
    flags = [str(v) for key, value in options.items() for v in (FLAG[key], value)]
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", folder, "--output", tmp_path / "sr", *flags], capsys)
    assert code == 0, err
    cli = np.asarray(Image.open(tmp_path / "sr" / "cat.png"))
    model = pcsr_lightning.load(ckpt, device="cpu")
    api = np.asarray(model(photo, **options))
    assert np.array_equal(cli, api)
    spec = RoutingSpec.build(**options)
    assert np.array_equal(np.asarray(model(photo, routing=spec)), api)
    result = model.upscale(photo, routing=spec)
    assert 0 < result.skipped_share < 1 and np.array_equal(np.asarray(result.image), api)
    # a halo or tile that differs changes what runs: the option really reaches the gate
    other = model.upscale(photo, routing=dataclasses.replace(spec, gate=dataclasses.replace(spec.gate, tile=4)))
    assert other.skipped_share != result.skipped_share


def test_a_session_prepares_once_and_equals_the_one_shot_path(ckpt, photo, monkeypatch):
    model = pcsr_lightning.load(ckpt, device="cpu")
    net = model.network
    lr = torch.from_numpy(np.asarray(photo)).permute(2, 0, 1)[None].float() / 255
    calls = []
    encode = type(net).encode
    monkeypatch.setattr(type(net), "encode", lambda self, x: calls.append(1) or encode(self, x))
    session = InferenceSession(net, lr, 4)
    ks = [-1.0, 0.0, 0.5, 2.0]
    runs = [session.run(RoutingSpec(k)) for k in ks]
    assert len(calls) == 1  # the backbone ran once for the whole sweep
    for k, out in zip(ks, runs):
        one = upscale(net, lr, 4, RoutingSpec(k))
        assert torch.equal(out.sr, one.sr) and torch.equal(out.classes, one.classes)
    gate = GateSpec(0.02, tile=8)
    gated = session.run(RoutingSpec(0.5, gate=gate))
    assert torch.equal(gated.sr, upscale(net, lr, 4, k=0.5, skip_flat=0.02, skip_tile=8).sr)
    assert torch.equal(session.forced(0).sr, upscale(net, lr, 4, k=-1e6).sr)  # all-heavy: the far end of k


def test_the_model_describes_itself(ckpt):
    model = pcsr_lightning.load(ckpt, device="cpu")
    assert (model.input_channels, model.output_channels) == (3, 3)
    assert 2.5 in model.supported_scales and 1.0 not in model.supported_scales and model.supported_scales.default == 4
    assert model.size_requirements.check(1, 7) and model.tiling == "supported"
    assert set(model.supported_dtypes) == {"float32", "float16", "bfloat16"}
    info = model.describe()
    assert info["kind"] == "pcsr" and info["scales"]["minimum_included"] is False and info["tiling"] == "supported"
    assert model.half() is model and model.dtype == torch.float16
    assert next(model.network.parameters()).dtype == torch.float16
    assert model.bfloat16().dtype == torch.bfloat16 and model.float().dtype == torch.float32
    assert model.eval() is model and not model.network.training
    assert model.to("cpu", "float32") is model and model.cpu().device.type == "cpu"
    photo = torch.rand(3, 5, 6)
    assert model(photo).shape == (3, 20, 24)
