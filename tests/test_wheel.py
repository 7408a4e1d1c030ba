"""The package as users install it: a wheel that carries its Hydra configs, and where configs are found."""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import pcsr_lightning
from pcsr_lightning.config import CHECKOUT_CONF, config_dir

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "conf", "src")


def run(cmd, cwd, env=None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_checkout_reads_its_own_conf_and_pcsr_config_dir_overrides_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PCSR_CONFIG_DIR", raising=False)
    assert config_dir() == CHECKOUT_CONF == ROOT / "conf"
    copy = shutil.copytree(ROOT / "conf", tmp_path / "conf")
    monkeypatch.setenv("PCSR_CONFIG_DIR", str(copy))
    assert config_dir() == copy
    monkeypatch.setenv("PCSR_CONFIG_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="PCSR_CONFIG_DIR=.*nowhere"):
        config_dir()


def test_wheel_installs_into_a_fresh_environment_and_runs(tmp_path):
    """Build the wheel from the repository's files, install it alone (no editable path, no conf/ nearby) into a
    new virtual environment that borrows this one's dependencies, and run both console scripts."""
    import setuptools

    if tuple(int(x) for x in setuptools.__version__.split(".")[:2]) < (70, 1) and not importlib.util.find_spec("wheel"):
        pytest.skip(f"setuptools {setuptools.__version__} builds wheels only with the 'wheel' package (offline build)")
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, source / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
         source], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("pcsr_lightning-*.whl")
    assert wheel.name.startswith(f"pcsr_lightning-{pcsr_lightning.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        licence = next(zf.read(n).decode() for n in names if n.endswith("/LICENSE"))
    shipped = {n.removeprefix("pcsr_lightning/conf/") for n in names if n.startswith("pcsr_lightning/conf/")}
    assert shipped == {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*.yaml")}
    assert licence.startswith("MIT License") and "pcsr-lightning contributors" in licence

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    # torch, lightning, hydra ... from this environment: a plain path entry (its editable-install hook is not run).
    (purelib / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel], cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k != "PCSR_CONFIG_DIR"}
    where = run([python, "-c", "import pcsr_lightning.config as c; print(c.__file__); print(c.config_dir())"],
                tmp_path, env).split()
    assert all(Path(p).is_relative_to(purelib) for p in where), where
    assert f"pcsr {pcsr_lightning.__version__}" in run([venv / "bin" / "pcsr", "--version"], tmp_path, env)
    assert "upscale" in run([venv / "bin" / "pcsr", "--help"], tmp_path, env)
    job = run([venv / "bin" / "pcsr-train", "--cfg", "job", "experiment=carn_pcsr"], tmp_path, env)
    assert "_target_: pcsr_lightning.models.CARN" in job and "name: carn\n" in job  # the experiment applied
