"""Progress on stderr (a bar on a terminal, plain lines piped), eval's as it goes, and a closed pipe's quiet end."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import pcsr_lightning.evaluation.evaluate as evaluate_module
from factories import save_tiny
from pcsr_lightning.apps.progress import Progress, Stages, duration
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate

SRC = Path(__file__).resolve().parents[2] / "src"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def photos(folder: Path, n: int, broken: bool = False) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    if broken:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return folder


def test_plain_lines_when_piped_first_last_and_one_per_interval():
    clock, out = Clock(), io.StringIO()
    progress = Progress(4, "eval", stream=out, live=False, interval=5.0, clock=clock)
    for t in (2.0, 3.0, 9.0, 10.0):  # 1: first, 2: within 5 s of it, 3: 7 s later, 4: the last
        clock.now = t
        progress.advance()
    progress.close()
    assert out.getvalue().splitlines() == [
        "eval 1/4 images, 2.0 s/image, 0:06 left",
        "eval 3/4 images, 3.0 s/image, 0:03 left",
        "eval 4/4 images, 2.5 s/image, 0:10 in all",
    ]


def test_a_live_bar_on_a_terminal_redrawn_in_place_and_kept_apart_from_results():
    clock, err, results = Clock(), io.StringIO(), io.StringIO()
    progress = Progress(2, "upscale", stream=err, live=True, clock=clock)
    clock.now = 0.5
    progress.advance()
    progress.echo("a.png -> sr/a.png", results)
    clock.now = 1.0
    progress.advance()
    progress.close()
    text = err.getvalue()
    assert text.startswith("\r\033[K[############............] upscale 1/2 images, 2.00 image/s, 0:00 left")
    assert text.count("\r\033[K") >= 3 and text.endswith("upscale 2/2 images, 2.00 image/s, 0:01 in all\n")
    assert results.getvalue() == "a.png -> sr/a.png\n"
    assert duration(3725) == "1:02:05" and duration(59.6) == "1:00"


def test_stages_count_each_stage_apart():
    err = io.StringIO()
    stages = Stages(stream=err, live=False)
    tick = stages("warm-up", 2)
    tick()
    tick()
    tick = stages("timing", 3)
    for _ in range(3):
        tick()
    stages.close()
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("warm-up 1/2 calls") and lines[1].startswith("warm-up 2/2 calls")
    assert lines[-1].startswith("timing 3/3 calls")


def test_evaluate_reports_each_image_as_it_goes(tmp_path, monkeypatch):
    """The callback comes after each image (failed ones too), before the next is read: not at the end."""
    folder = photos(tmp_path / "hr", 2, broken=True)
    events = []
    real = evaluate_module.load_pair

    def load_pair(path, *args, **kwargs):
        events.append(("read", path.name))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "load_pair", load_pair)
    settings = EvalSettings(str(save_tiny(tmp_path / "m.safetensors")), str(folder))
    records, failures = evaluate(settings, log=lambda msg: None,
                                 on_image=lambda done, total, name: events.append((done, total, name)))
    assert failures == 1 and len(records) == 2
    assert events == [("read", "broken.jpg"), (1, 3, "broken.jpg"), ("read", "p0.png"), (2, 3, "p0.png"),
                      ("read", "p1.png"), (3, 3, "p1.png")]


def pcsr(*args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    code = "import sys; from pcsr_lightning.apps.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_eval_and_upscale_show_progress_on_stderr_when_piped(tmp_path):
    folder = photos(tmp_path / "hr", 2)
    model = save_tiny(tmp_path / "m.safetensors")
    proc = pcsr("eval", "--ckpt", model, "--hr-dir", folder, stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "eval 1/2 images" in err and "eval 2/2 images" in err and "in all" in err and "\r" not in err
    assert "eval" not in out.split("model")[0]  # the table on stdout, the progress apart


def test_a_closed_pipe_ends_upscale_quietly_keeping_what_was_written(tmp_path):
    """As ``pcsr upscale ... | head -1`` once head has gone: exit 141 (128 + SIGPIPE), no traceback, no
    error line, and the image finished before the pipe closed is whole."""
    folder = photos(tmp_path / "in", 3)
    out = tmp_path / "sr"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    proc = pcsr("upscale", "--ckpt", save_tiny(tmp_path / "m.safetensors"), "--input", folder, "--output", out,
                stdout=write)
    os.close(write)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == "", err
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["p0.png"]  # its line was the first to hit the closed pipe
    with Image.open(written[0]) as img:
        img.load()
        assert img.size == (80, 64)
