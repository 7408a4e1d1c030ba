"""Model files: .ckpt, .safetensors and model folders round-trip every model kind; crafted files are refused."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from factories import save_tiny, tiny_config, tiny_model
from pcsr_lightning.apps.cli import main
from pcsr_lightning.io.checkpoint import CheckpointError, save_checkpoint
from pcsr_lightning.io.manifest import Manifest, StageRecord
from pcsr_lightning.io.safetensors_format import read_safetensors, write_safetensors
from pcsr_lightning.io.weights import format_of, load_model, save_model

KINDS = [("pcsr", "carn", 2), ("pcsr", "fsrcnn", 3), ("pcsr", "srresnet", 2),
         ("original", "carn", 1), ("original", "fsrcnn", 1), ("original", "srresnet", 1)]
TARGETS = {"ckpt": "model.ckpt", "safetensors": "model.safetensors", "folder": "model"}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("fmt", list(TARGETS))
@pytest.mark.parametrize("kind, backbone, m", KINDS)
def test_every_model_kind_round_trips(tmp_path, fmt, kind, backbone, m):
    path = save_tiny(tmp_path / TARGETS[fmt], kind, backbone, m)
    assert format_of(path) == fmt
    loaded = load_model(path)
    assert loaded.kind == kind and loaded.config == tiny_config(kind, backbone, m)
    assert loaded.meta == {"seed": 0}
    assert same_weights(loaded.model, tiny_model(kind, backbone, m))
    assert not loaded.model.training


def test_folder_layout_and_the_config_json(tmp_path):
    folder = save_tiny(tmp_path / "hub", format="folder")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    header = json.loads((folder / "config.json").read_text())
    assert header["format"] == "pcsr-lightning" and header["kind"] == "pcsr"
    assert header["model_config"] == tiny_config()
    tensors, metadata = read_safetensors(folder / "model.safetensors")
    assert metadata == {} and "classifier.layers.0.weight" in tensors


def test_safetensors_metadata_holds_the_config_as_json(tmp_path):
    path = save_tiny(tmp_path / "m.safetensors")
    _, metadata = read_safetensors(path)
    assert json.loads(metadata["model_config"]) == tiny_config()
    assert metadata["kind"] == "pcsr" and json.loads(metadata["meta"]) == {"seed": 0}


def rewrite_metadata(path, **changes):
    tensors, metadata = read_safetensors(path)
    write_safetensors(path, tensors, {**metadata, **changes})


def test_a_tampered_header_is_refused(tmp_path):
    path = save_tiny(tmp_path / "m.safetensors")
    config = tiny_config()
    config["backbone"] = {"_target_": "os.system", "command": "echo hacked"}
    rewrite_metadata(path, model_config=json.dumps(config))
    with pytest.raises(CheckpointError, match="refusing to build 'os.system'"):
        load_model(path)
    rewrite_metadata(path, model_config="{not json")
    with pytest.raises(CheckpointError, match="'model_config' entry is not valid JSON"):
        load_model(path)
    # A byte of the header changed on disk: the format check refuses it before any tensor is built.
    raw = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", raw[:8])
    raw[8 + length // 2] = ord("\x00")
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(path)


def test_weights_of_the_wrong_shape_are_refused_with_the_tensor_named(tmp_path):
    path = save_tiny(tmp_path / "m.safetensors")
    tensors, metadata = read_safetensors(path)
    wider = tiny_config()
    wider["upsampler_hidden"] = [[24, 24], [6]]
    write_safetensors(path, tensors, {**metadata, "model_config": json.dumps(wider)})
    with pytest.raises(CheckpointError,
                       match=r"shape mismatches \['upsamplers\.1\.layers\.0\.bias: checkpoint \(12,\) vs model \(6,\)"):
        load_model(path)


def test_plain_safetensors_without_a_config_is_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    write_safetensors(path, tiny_model().state_dict())
    with pytest.raises(CheckpointError, match="not a pcsr-lightning model file"):
        load_model(path)


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="cannot tell the format"):
        format_of(tmp_path / "model.onnx")


def test_a_training_run_loads_its_final_checkpoint(tmp_path):
    run = tmp_path / "run"
    final = save_checkpoint(run / "final.ckpt", tiny_model(seed=3), tiny_config())
    manifest = Manifest("fsrcnn_pcsr", "fsrcnn", "pcsr", str(final), [StageRecord("stage0", "done", str(final))])
    manifest.save(run)
    for source in (run, run / "manifest.json"):
        assert same_weights(load_model(source).model, tiny_model(seed=3))
    Manifest("fsrcnn_pcsr", "fsrcnn", "pcsr", None, [StageRecord("stage0", "running", str(run))]).save(run)
    with pytest.raises(CheckpointError, match="not done"):
        load_model(run)


def test_a_manifest_written_before_the_scale_was_kept_still_loads_and_resumes(tmp_path):
    from pcsr_lightning.io.manifest import open_run

    run = tmp_path / "run"
    final = save_checkpoint(run / "final.ckpt", tiny_model(seed=3), tiny_config())
    old = Manifest("fsrcnn_pcsr", "fsrcnn", "pcsr", str(final), [StageRecord("stage0", "done", str(final))])
    data = json.loads(old.save(run).read_text())
    del data["scale"]
    (run / "manifest.json").write_text(json.dumps(data))
    assert Manifest.load(run).scale is None and same_weights(load_model(run).model, tiny_model(seed=3))
    fresh = Manifest("fsrcnn_pcsr", "fsrcnn", "pcsr", scale=[1, 4])
    assert open_run(run, fresh, resume=True).stages[0].name == "stage0"
    Manifest("fsrcnn_pcsr", "fsrcnn", "pcsr", str(final), scale=4).save(run)
    with pytest.raises(ValueError, match=r"its scale is 4, this config's is \[1, 4\]"):
        open_run(run, fresh, resume=True)


def test_convert_cli_round_trip(tmp_path, capsys):
    ckpt = save_tiny(tmp_path / "a.ckpt", "pcsr", "fsrcnn", 2)
    assert main(["convert", str(ckpt), "--out", str(tmp_path / "b.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "b.safetensors"), "--out", str(tmp_path / "c"), "--format", "folder"]) == 0
    assert main(["convert", str(tmp_path / "c"), "--out", str(tmp_path / "d.ckpt")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert same_weights(load_model(tmp_path / "d.ckpt").model, load_model(ckpt).model)
    assert load_model(tmp_path / "d.ckpt").meta["converted_from"] == "c"  # the name: no local path
    # An existing output is kept unless --overwrite; the source itself is never an output.
    before = (tmp_path / "b.safetensors").read_bytes()
    assert main(["convert", str(ckpt), "--out", str(tmp_path / "b.safetensors")]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "b.safetensors").read_bytes() == before
    assert main(["convert", str(ckpt), "--out", str(ckpt), "--overwrite"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err


def test_save_model_refuses_a_file_where_a_folder_goes(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        save_model(tmp_path / "taken", tiny_model(), tiny_config(), format="folder")


def test_import_official_writes_every_format(official_ckpts, tmp_path, capsys):
    from conftest import OFFICIAL

    for out in ("fsrcnn.safetensors", "fsrcnn-folder"):
        assert main(["import-official", "--src", str(OFFICIAL / "fsrcnn-pcsr-phase1.pth"),
                     "--out", str(tmp_path / out)]) == 0
        assert same_weights(load_model(tmp_path / out).model, load_model(official_ckpts["fsrcnn-pcsr-phase1"]).model)
    assert "cost list x4" in capsys.readouterr().out


def test_non_finite_weights_are_refused_in_every_format(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.upsamplers[1].layers[0].weight[0, 0] = float("nan")
    for name in ("bad.safetensors", "bad-folder", "bad.ckpt"):
        path = save_model(tmp_path / name, model, tiny_config())
        with pytest.raises(CheckpointError, match=r"upsamplers\.1\.layers\.0\.weight.*non-finite"):
            load_model(path)
