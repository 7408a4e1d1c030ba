"""Bad input, built as files: hostile checkpoints and pickles, decompression bombs, outputs that would
destroy inputs, unwritable folders, empty files, nonsense numbers. Each case checks the exit code, the
message, that no input or earlier output changed and that no code from a file ran."""

from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from bad_input_kit import TINY_CONFIG, run_cli, snapshot, tiny_model
from pcsr_lightning.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pcsr_lightning.io.images import read_image
from pcsr_lightning.models import PCSR


class Marker:
    """Unpickling runs ``touch <path>``: the file appears only if a loader ran the pickle's code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature, IHDR and IEND declaring ``width`` x ``height`` RGB, with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IEND", b"")


# --- checkpoints never run code ----------------------------------------------------------------------


def gadget_chain(tmp_path: Path, module: str) -> dict:
    """The chain from the report: write a pickle with a project helper, then torch.load it unsafely."""
    evil = pickle.dumps(Marker(tmp_path / "marker"), protocol=0).decode("latin-1")
    return {"_target_": f"{module}.torch.load", "weights_only": False,
            "f": {"_target_": "pcsr_lightning.io.files.write_text", "path": str(tmp_path / "x.pkl"), "text": evil}}


@pytest.mark.parametrize("module", ["pcsr_lightning.io.checkpoint", "pcsr_lightning.models.pcsr"])
def test_gadget_chain_checkpoint_runs_nothing(tmp_path, photos, capsys, module):
    bad = save_checkpoint(tmp_path / "evil.ckpt", tiny_model(), gadget_chain(tmp_path, module))
    before = snapshot(photos)
    for args in (["upscale", "--ckpt", bad, "--input", photos, "--output", tmp_path / "sr"],
                 ["eval", "--ckpt", bad, "--hr-dir", photos],
                 ["flops", "--ckpt", bad, "--lr-size", 8, 8]):
        code, err = run_cli(args, capsys)
        assert code == 2
        assert f"refusing to build '{module}.torch.load'" in err and "PCSR_ALLOW_CLASSES" in err
    assert not (tmp_path / "x.pkl").exists() and not (tmp_path / "marker").exists()
    assert snapshot(photos) == before


@pytest.mark.parametrize("config, message", [
    ({**TINY_CONFIG, "backbone": {"_target_": "builtins.eval", "source": "1"}},
     "refusing to build 'builtins.eval' at model.backbone"),
    ({**TINY_CONFIG, "_target_": "pcsr_lightning.models.pcsr.torch.nn.Module"}, "refusing to build"),
    ({**TINY_CONFIG, "_args_": ["x"]}, r"refusing \['_args_'\]"),
    ({**TINY_CONFIG, "backbone": {**TINY_CONFIG["backbone"], "_partial_": True}}, r"refusing \['_partial_'\]"),
    ({**TINY_CONFIG, "_target_": "pcsr_lightning.models.MLP"}, "refusing to build 'pcsr_lightning.models.MLP'"),
])
def test_only_model_classes_with_plain_arguments(tmp_path, config, message):
    path = save_checkpoint(tmp_path / "bad.ckpt", tiny_model(), config)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_the_model_classes_keep_their_import_paths(tmp_path):
    long_names = {**TINY_CONFIG, "_target_": "pcsr_lightning.models.pcsr.PCSR",
                  "backbone": {**TINY_CONFIG["backbone"], "_target_": "pcsr_lightning.models.carn.CARN"}}
    for config in (TINY_CONFIG, long_names):
        assert load_checkpoint(save_checkpoint(tmp_path / "m.ckpt", tiny_model(), config)).is_pcsr


USER_TRUNK = '''
import torch
from torch import nn


class TinyTrunk(nn.Module):
    def __init__(self, width: int = 6, scale=None):
        super().__init__()
        self.out_dim, self.scale = width, scale
        self.conv = nn.Conv2d(3, width, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
'''


def test_a_users_own_backbone_is_allowed_by_name(tmp_path, photos, capsys, monkeypatch):
    module = "user_trunk_for_allow_test"
    (tmp_path / f"{module}.py").write_text(USER_TRUNK)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {**TINY_CONFIG, "backbone": {"_target_": f"{module}.TinyTrunk", "width": 6}}
    import importlib

    net = PCSR(importlib.import_module(module).TinyTrunk(6), [[16], [8]], [8])
    path = save_checkpoint(tmp_path / "user.ckpt", net, config)
    code, err = run_cli(["upscale", "--ckpt", path, "--input", photos, "--output", tmp_path / "sr"], capsys)
    assert code == 2 and f"refusing to build '{module}.TinyTrunk'" in err
    monkeypatch.delenv("PCSR_ALLOW_CLASSES", raising=False)
    allow = ["--allow-class", f"{module}.TinyTrunk"]
    assert run_cli([*allow, "upscale", "--ckpt", path, "--input", photos, "--output", tmp_path / "sr0"], capsys)[0] == 0
    assert read_image(tmp_path / "sr0" / "cat.png").shape == (3, 96, 128)
    assert "PCSR_ALLOW_CLASSES" not in os.environ  # the option holds for that call only
    monkeypatch.setenv("PCSR_ALLOW_CLASSES", f" {module}.TinyTrunk , ")
    assert run_cli(["upscale", "--ckpt", path, "--input", photos, "--output", tmp_path / "sr"], capsys)[0] == 0
    assert read_image(tmp_path / "sr" / "cat.png").shape == (3, 96, 128)
    monkeypatch.setenv("PCSR_ALLOW_CLASSES", "os.system")
    code, err = run_cli(["upscale", "--ckpt", path, "--input", photos, "--output", tmp_path / "sr2"], capsys)
    assert code == 2 and "'os.system' is not a torch.nn.Module class" in err


def test_a_checkpoint_cannot_import_a_module(tmp_path):
    """Naming a module in _target_ does not import it: the allow-list is looked up, not resolved."""
    (tmp_path / "side_effect_mod.py").write_text(f"open({str(tmp_path / 'marker')!r}, 'w').close()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        path = save_checkpoint(tmp_path / "m.ckpt", tiny_model(), {**TINY_CONFIG, "_target_": "side_effect_mod.X"})
        with pytest.raises(CheckpointError, match="refusing"):
            load_checkpoint(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert "side_effect_mod" not in sys.modules and not (tmp_path / "marker").exists()


# --- pickles: weights only, hints only for the release's layout -------------------------------------------


def test_malicious_pickle_is_refused_everywhere(tmp_path, photos, capsys):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"name": "carn", "args": {}, "sd": {}}, "payload": Marker(marker)}, evil)
    code, err = run_cli(["import-official", "--src", evil, "--out", tmp_path / "out.ckpt"], capsys)
    assert code == 2 and "posix.system" in err and "could run code" in err and "--trust-pickle" in err
    code, err = run_cli(["upscale", "--ckpt", evil, "--input", photos, "--output", tmp_path / "sr"], capsys)
    assert code == 2 and "could run code" in err and "import-official" not in err
    assert not marker.exists() and not (tmp_path / "out.ckpt").exists() and not (tmp_path / "sr").exists()
    # The explicit trust flag does unpickle it, with a warning (this file then fails on its empty weights).
    with pytest.warns(UserWarning, match="can run any code"):
        code, err = run_cli(["import-official", "--src", evil, "--out", tmp_path / "out.ckpt", "--trust-pickle"],
                            capsys)
    assert marker.exists() and code == 2 and "do not fit the model" in err


def test_import_hint_only_for_the_release_layout(tmp_path, photos, capsys):
    release = tmp_path / "release.pth"
    torch.save({"model": {"name": "carn", "args": {}, "sd": {"w": torch.zeros(1)}}, "iter": 1}, release)
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(1)}, other)
    code, err = run_cli(["eval", "--ckpt", release, "--hr-dir", photos], capsys)
    assert code == 2 and "convert it with `pcsr import-official`" in err
    code, err = run_cli(["eval", "--ckpt", other, "--hr-dir", photos], capsys)
    assert code == 2 and "not a pcsr-lightning checkpoint" in err and "import-official" not in err


def test_empty_files(tmp_path, photos, capsys):
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    for args in (["upscale", "--ckpt", empty, "--input", photos, "--output", tmp_path / "sr"],
                 ["import-official", "--src", empty, "--out", tmp_path / "o.ckpt"]):
        code, err = run_cli(args, capsys)
        assert code == 2 and "is empty (0 bytes)" in err
    (photos / "zero.png").touch()
    code, err = run_cli(["upscale", "--ckpt", save_checkpoint(tmp_path / "t.ckpt", tiny_model(), TINY_CONFIG),
                         "--input", photos, "--output", tmp_path / "sr"], capsys)
    assert code == 1 and "zero.png" in err and (tmp_path / "sr" / "cat.png").is_file()


# --- outputs never destroy inputs or earlier results ---------------------------------------------------


def test_same_folder_output_refused_and_inputs_kept(ckpt, photos, capsys):
    before = snapshot(photos)
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", photos], capsys)
    assert code == 2 and "would overwrite the input" in err and "cat.png" in err
    assert snapshot(photos) == before


def test_same_stem_inputs_get_one_result_each(ckpt, photos, tmp_path, capsys):
    Image.open(photos / "cat.png").save(photos / "cat.jpg", quality=95)
    out = tmp_path / "sr"
    assert run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out, "--class-map"], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["cat_jpg.png", "cat_jpg_classes.png", "cat_png.png",
                                                     "cat_png_classes.png"]
    # Into the input folder, even under new names, is refused: the next run would read the results as inputs.
    before = snapshot(photos)
    for extra in ([], ["--overwrite"]):
        code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", photos, *extra], capsys)
        assert code == 2 and "a folder this command reads" in err and str(photos) in err
    assert snapshot(photos) == before


def test_existing_results_need_overwrite(ckpt, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sr"
    assert run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out], capsys)[0] == 0
    before = snapshot(out)
    import pcsr_lightning.apps.commands.upscale as upscale

    monkeypatch.setattr(upscale, "load", lambda *a, **k: pytest.fail("work started before the refusal"))
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out, "--k", "2"], capsys)
    assert code == 2 and "already exist" in err and "--overwrite" in err
    assert snapshot(out) == before
    monkeypatch.undo()
    assert run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out, "--overwrite"], capsys)[0] == 0


def read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody can write to: chmod for a normal user; root ignores modes, so a path in sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder / "sr"
    folder = Path("/sys/pcsr-read-only-check")
    try:
        folder.mkdir()
    except OSError:
        return folder
    folder.rmdir()
    pytest.skip("no read-only location on this machine")


def test_unwritable_outputs_refused_before_work(ckpt, photos, tmp_path, capsys, monkeypatch):
    import pcsr_lightning.apps.commands.upscale as upscale

    monkeypatch.setattr(upscale, "load", lambda *a, **k: pytest.fail("work started before the refusal"))
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", read_only_folder(tmp_path)], capsys)
    assert code == 2 and "not writable" in err
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("keep me")
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", a_file], capsys)
    assert code == 2 and "is a file, not a folder" in err
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", a_file / "sub"], capsys)
    assert code == 2 and "is a file, not a folder" in err
    assert a_file.read_text() == "keep me"
    monkeypatch.undo()
    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", photos, "--out", a_file / "x.csv"], capsys)
    assert code == 2 and "is a file, not a folder" in err
    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", photos, "--out", photos / "cat.png"], capsys)
    assert code == 2 and "would overwrite the input" in err
    code, err = run_cli(["table", "--row", f"CARN-PCSR={ckpt}", "--out-dir", a_file], capsys)
    assert code == 2 and "is a file, not a folder" in err


def test_disk_full_is_said_in_words(ckpt, photos, tmp_path, capsys, monkeypatch):
    def full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", tmp_path / "sr"], capsys)
    assert code == 2 and "cannot write" in err and "no space left" in err
    assert list((tmp_path / "sr").iterdir()) == []  # no half file, no temporary file
    monkeypatch.undo()

    import shutil
    from collections import namedtuple

    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: namedtuple("usage", "total used free")(1, 1, 0))
    from pcsr_lightning.io.files import OutputError

    with pytest.raises(OutputError, match="cannot write .*m.ckpt: no space left on the device"):
        save_checkpoint(tmp_path / "m.ckpt", tiny_model(), TINY_CONFIG)


def test_out_of_memory_names_the_image_and_the_tile_option(ckpt, photos, tmp_path, capsys, monkeypatch):
    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 96000000000 bytes.")

    import pcsr_lightning.inference.srmodel as srmodel

    monkeypatch.setattr(srmodel.SRModel, "super_resolve", oom)
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", tmp_path / "sr"], capsys)
    assert code == 2 and "cat.png: out of memory" in err and "--tile" in err
    import pcsr_lightning.evaluation.evaluate as evaluate

    monkeypatch.setattr(evaluate, "evaluate_image",
                        lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory")))
    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", photos], capsys)
    assert code == 2 and "out of memory" in err and "--tile" in err


# --- images: bombs, pixel limit, orientation, too small ------------------------------------------------


def test_decompression_bombs_are_named_and_the_rest_processed(ckpt, photos, tmp_path, capsys):
    bomb = photos / "bomb.png"
    bomb.write_bytes(png_header(30000, 30000))
    assert len(bomb.read_bytes()) == 45
    (photos / "big.png").write_bytes(png_header(8000, 8000))  # 64 Mpx: under Pillow's limit, over ours
    out = tmp_path / "sr"
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out], capsys)
    assert code == 1 and "bomb.png: refused as a decompression bomb" in err
    assert "big.png: 8000x8000 = 64,000,000 pixels is above --max-pixels 40,000,000" in err
    assert [p.name for p in out.iterdir()] == ["cat.png"]
    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", photos], capsys)
    assert code == 1 and "bomb.png" in err and "big.png" in err
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos / "cat.png", "--output", tmp_path / "s2",
                         "--max-pixels", 700], capsys)
    assert code == 1 and "cat.png: 32x24 = 768 pixels is above --max-pixels 700" in err
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out, "--max-pixels", 0], capsys)
    assert code == 2 and "--max-pixels" in err


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: a portrait photo
    img.save(tmp_path / "portrait.jpg", exif=exif)
    assert read_image(tmp_path / "portrait.jpg").shape == (3, 40, 20)


def test_too_small_for_the_scale_and_shave_is_named(ckpt, photos, capsys):
    Image.new("RGB", (8, 8), (90, 90, 90)).save(photos / "tiny.png")
    Image.new("RGB", (3, 3), (90, 90, 90)).save(photos / "dot.png")
    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", photos, "--scale", 4], capsys)
    assert code == 1
    assert "tiny.png: HR (8, 8) is too small for x4" in err and "dot.png: image of (3, 3) is too small for x4" in err
    assert "nan" not in capsys.readouterr().out


# --- numbers and names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, message", [
    ("--scale", "inf", "--scale: must be a finite number > 1, got inf"),
    ("--scale", "nan", "must be a finite number > 1"),
    ("--k", "nan", "the cost knob k must be a finite number, got nan"),
    ("--k", "inf", "must be a finite number"),
    ("--device", "gpu0", "device 'gpu0' is not a device: use auto, cpu or cuda[:N]"),
])
def test_nonsense_numbers_and_devices(ckpt, photos, tmp_path, capsys, flag, value, message):
    for args in (["upscale", "--ckpt", ckpt, "--input", photos, "--output", tmp_path / "sr"],
                 ["eval", "--ckpt", ckpt, "--hr-dir", photos]):
        code, err = run_cli([*args, flag, value], capsys)
        assert code == 2 and message in err
    assert not (tmp_path / "sr").exists() or not any((tmp_path / "sr").iterdir())


def test_table_rows_of_the_wrong_kind_or_backbone(ckpt, tmp_path, capsys):
    code, err = run_cli(["table", "--row", f"FSRCNN={ckpt}", "--out-dir", tmp_path / "t"], capsys)
    assert code == 2 and "is a pcsr checkpoint with a CARN backbone, the row needs original with FSRCNN" in err
    code, err = run_cli(["table", "--row", f"FSRCNN-PCSR={ckpt}", "--out-dir", tmp_path / "t"], capsys)
    assert code == 2 and "the row needs pcsr with FSRCNN" in err


def test_extreme_k_routes_to_the_limits():
    from pcsr_lightning.inference.router import route_by_cost

    costs = torch.tensor([0.91, 0.09])
    probs = torch.tensor([[1e-6, 1 - 1e-6], [0.5, 0.5], [0.999, 0.001]])
    assert route_by_cost(probs, costs, -1000.0).tolist() == [0, 0, 0]
    assert route_by_cost(probs, costs, 1000.0).tolist() == [1, 1, 1]
    assert route_by_cost(torch.tensor([[0.0, 1.0]]), costs, -1000.0).tolist() == [1]  # p_heavy = 0 stays light
    with pytest.raises(ValueError, match="finite"):
        route_by_cost(probs, costs, float("nan"))


# --- written files and interrupted writes ---------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    from pcsr_lightning.io.files import write_text

    old = os.umask(umask)
    try:
        path = write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_temporary_files_of_interrupted_writes_are_removed(tmp_path):
    from pcsr_lightning.io import files

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.png.{files._host()}.{int(dead.stdout)}.0badc0de{files.TMP_SUFFIX}"
    live = tmp_path / f".b.png.{files._host()}.{os.getppid()}.0badc0de{files.TMP_SUFFIX}"
    elsewhere = tmp_path / f".c.png.otherhost.{int(dead.stdout)}.0badc0de{files.TMP_SUFFIX}"
    for p in (stale, live, elsewhere):
        p.write_bytes(b"half")
    files.write_text("x", tmp_path / "new.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, elsewhere.name, "new.txt"])


# --- a refused training run touches nothing ------------------------------------------------------------


def test_refused_resume_leaves_the_run_folder_untouched(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(
        {"experiment": "fsrcnn_pcsr", "backbone": "fsrcnn", "kind": "pcsr", "final_checkpoint": None, "stages": []}))
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run / ".hydra" / name).write_text(f"# the run's own {name}\n")
    before = snapshot(run)
    train = Path(sys.executable).parent / "pcsr-train"
    proc = subprocess.run([str(train), "experiment=carn_pcsr", "resume=true", "logger=none", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0 and "its experiment is 'fsrcnn_pcsr', this config's is 'carn_pcsr'" in proc.stderr
    assert snapshot(run) == before
    assert sorted(p.name for p in run.rglob("*")) == sorted(["manifest.json", ".hydra", "config.yaml", "hydra.yaml",
                                                               "overrides.yaml"])


def test_pcsr_eval_refuses_nan_k(ckpt, photos, tmp_path, capsys, monkeypatch):
    from pcsr_lightning.apps.eval_app import main as app

    monkeypatch.setattr(sys, "argv", ["pcsr-eval", f"eval.ckpt={ckpt}", f"eval.hr_dir={photos}", "eval.k=nan",
                                      f"hydra.run.dir={tmp_path / 'job'}"])
    with pytest.raises(SystemExit) as exit_:
        app()
    assert exit_.value.code == 2 and "k must be a finite number, got nan" in capsys.readouterr().err
