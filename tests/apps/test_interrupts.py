"""Ctrl-C at any moment, the start-up imports included, ends each console script with exit code 130 and
one line, never a traceback. A real SIGINT is sent to a real process at several moments of its life."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SRC = Path(__file__).resolve().parents[2] / "src"
pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see torch loading")
LAUNCH = "import sys; from pcsr_lightning.apps.launch import {fn} as app; sys.exit(app())"


def torch_loading(pid: int, timeout: float = 60.0) -> None:
    """Wait until the process has torch's library mapped: it is then inside its start-up imports (which
    run inside the launcher's guard), whatever the machine's speed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if "libtorch" in Path(f"/proc/{pid}/maps").read_text():
                return
        except OSError:
            return
        time.sleep(0.005)


def interrupted(fn: str, args: list, delay: float, cwd: Path) -> tuple[int, str]:
    """Exit code and stderr of a console script sent SIGINT ``delay`` seconds after it began importing torch."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH.format(fn=fn), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    torch_loading(proc.pid)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ctrl_c")
    for name in ("train", "val"):
        (root / name).mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (136, 136, 3), dtype=np.uint8)).save(root / "train" / f"t{i}.png")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / "val" / "v.png")
    return root


@pytest.mark.parametrize("delay", [0.0, 1.5, 4.0])  # in the imports, in composing/checking, in training
def test_ctrl_c_in_pcsr_train_at_any_moment(data, tmp_path, delay):
    args = ["profile=smoke", "logger=none", "data=image_folder", f"data.train.path={data / 'train'}",
            f"data.val.path={data / 'val'}", "data.crops_per_image=1", "profile.steps.stage0=100000",
            f"hydra.run.dir={tmp_path / 'run'}"]
    code, err = interrupted("pcsr_train", args, delay, tmp_path)
    assert code == 130 and "Traceback" not in err, err
    assert "interrupted" in err.splitlines()[-1]


@pytest.mark.parametrize("delay", [0.0, 0.1])  # while torch is being imported
def test_ctrl_c_in_pcsr_and_pcsr_eval_start_up(tmp_path, delay):
    for fn, args in (("pcsr", ["flops", "--arch", "carn", "--lr-size", "64", "64"]),
                     ("pcsr_eval", ["eval.ckpt=none.ckpt", "eval.hr_dir=none"])):
        code, err = interrupted(fn, args, delay, tmp_path)
        assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) <= 2, (fn, delay, err)
