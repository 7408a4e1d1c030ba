"""The inference install: with the optional packages absent (``light_env``), the package loads a model,
calls it, and ``pcsr upscale``, ``convert``, ``import-official`` and ``--help`` run, importing none of them;
a command that needs an extra says in one line which install brings it (exit code 2)."""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path

import pytest
import tomllib
import torch
from PIL import Image

from factories import save_tiny
from light_env import HEAVY_REPORT, imported_heavy, light_site, run_light
from pcsr_lightning.apps.cli import COMMANDS, missing_packages
from pcsr_lightning.extras import PACKAGES, MissingExtra, install_command, missing_extra, need
from pcsr_lightning.models import FSRCNN

# Run in the child: every call's exit code and stderr, as one JSON line before the heavy-module report.
CHILD = textwrap.dedent("""
    import contextlib, io, json, sys
    import numpy as np
    import pcsr_lightning
    from pcsr_lightning.apps.cli import main

    model_path, image, out, release = sys.argv[1:5]
    model = pcsr_lightning.load(model_path, device="cpu")
    sr = model(np.zeros((6, 5, 3), np.uint8))
    result = model.upscale(np.zeros((6, 5, 3), np.uint8))
    report = {"sr_shape": list(sr.shape), "gflops": sorted(result.gflops)}

    def cli(*argv):
        err, text = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(text):
            try:
                code = main(list(argv))
            except SystemExit as stop:
                code = stop.code
        return {"code": code, "stderr": err.getvalue(), "stdout": text.getvalue()}

    report["help"] = cli("--help")
    report["upscale"] = cli("upscale", "--ckpt", model_path, "--input", image, "--output", out + "/sr")
    report["convert"] = cli("convert", model_path, "--out", out + "/folder")
    report["import"] = cli("import-official", "--src", release, "--out", out + "/release.safetensors")
    report["demo"] = cli("demo", "--profile", "smoke")
    report["demo_help"] = cli("demo", "--help")
    report["eval"] = cli("eval", "--ckpt", model_path, "--hr-dir", out)
    report["flops_arch"] = cli("flops", "--arch", "carn", "--lr-size", "8", "8")
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """The child's report, run once for every test of this file."""
    tmp = tmp_path_factory.mktemp("light")
    model = save_tiny(tmp / "tiny.safetensors")
    Image.new("RGB", (7, 6), (90, 40, 200)).save(tmp / "photo.png")
    net = FSRCNN(d=8, s=4, m=1, scale=4)
    torch.save({"model": {"name": "fsrcnn", "args": {"d": 8, "s": 4, "m": 1, "upscale": 4}, "sd": net.state_dict()}},
               tmp / "fsrcnn-x4.pth")
    site = light_site(tmp / "site")
    args = [str(model), str(tmp / "photo.png"), str(tmp), str(tmp / "fsrcnn-x4.pth")]
    done = run_light(site, "import sys; sys.argv = ['-c', *%r]\n%s%s" % (args, CHILD, HEAVY_REPORT))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return {"report": json.loads(lines[-2]), "heavy": imported_heavy(done.stdout), "tmp": tmp}


def test_inference_imports_none_of_the_optional_packages(light):
    assert light["heavy"] == []


def test_load_call_upscale_convert_import_run_without_the_extras(light):
    report, tmp = light["report"], light["tmp"]
    assert report["sr_shape"] == [24, 20, 3]
    assert report["gflops"] == ["paper"]  # fvcore's convention needs the flops extra
    for name in ("help", "upscale", "convert", "import"):
        assert report[name]["code"] == 0, (name, report[name])
    assert "upscale" in report["help"]["stdout"] and "exit codes:" in report["help"]["stdout"]
    assert Image.open(tmp / "sr" / "photo.png").size == (28, 24)
    assert (tmp / "folder" / "config.json").is_file() and (tmp / "release.safetensors").is_file()


@pytest.mark.parametrize("name, extras", [("demo", "train,flops,demo"), ("demo_help", "train,flops,demo"),
                                          ("eval", "flops"), ("flops_arch", "flops")])
def test_a_command_missing_its_extra_says_which_install_brings_it(light, name, extras):
    result = light["report"][name]
    assert result["code"] == 2
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: pcsr ")
    assert lines[0].endswith(f"pip install 'pcsr-lightning[{extras}]'"), lines[0]


def test_every_extra_the_commands_name_is_declared_in_pyproject():
    declared = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    extras = declared["optional-dependencies"]
    base = " ".join(declared["dependencies"])
    for package, (distribution, extra) in PACKAGES.items():
        assert any(dep.startswith(distribution) for dep in extras[extra]), (package, extra)
        assert distribution not in base, f"{distribution} is in the plain install"
    assert {e for c in COMMANDS.values() for e in c.extras} <= set(extras)


def test_need_names_the_extra_and_lets_other_import_errors_through(monkeypatch):
    real = importlib.import_module

    def absent(name, *args):
        if name.split(".")[0] == "fvcore":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name.split(".")[0])
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", absent)
    with pytest.raises(MissingExtra, match=r"counting needs fvcore, which is not installed: pip install "
                                           r"'pcsr-lightning\[flops\]'") as err:
        need("fvcore.nn", "counting")
    assert missing_extra(err.value) == "flops"
    assert missing_extra(ModuleNotFoundError("x", name="hydra.core")) == "train"
    assert missing_extra(ModuleNotFoundError("x", name="yaml")) is None
    assert install_command("train", "flops", "train") == "pip install 'pcsr-lightning[train,flops]'"
    assert missing_packages(COMMANDS["upscale"]) == []
