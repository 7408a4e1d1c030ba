"""experiments/common.sh's link_photos (the photo folder of a REFIT=1 retraining run) on generated folders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

COMMON = Path(__file__).resolve().parents[2] / "experiments" / "common.sh"


def link_photos(dest: Path, *folders: Path) -> subprocess.CompletedProcess:
    """Run the function as common.sh defines it (sourcing the whole file would import the release checkpoints)."""
    function = re.search(r"^link_photos\(\) \{\n.*?^\}\n", COMMON.read_text(), re.S | re.M)
    assert function, "link_photos() not found in experiments/common.sh"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = f'set -euo pipefail\n{function.group(0)}link_photos "$@"\n'
    return subprocess.run(["bash", "-c", script, "link_photos", str(dest), *map(str, folders)],
                          capture_output=True, text=True, env=env)


def make_folder(path: Path, names: list[str]) -> Path:
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_bytes(b"not read")
    return path


def test_links_every_image_of_each_folder_and_nothing_else(tmp_path):
    train = make_folder(tmp_path / "train", ["a.png", "b.JPG", "notes.txt"])
    val = make_folder(tmp_path / "val", ["c.png"])
    dest = tmp_path / "run" / "photos"
    make_folder(dest, ["stale.png"])   # left by an earlier call: emptied first
    result = link_photos(dest, train, val)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["a.png", "b.JPG", "c.png"]
    assert all(p.is_symlink() for p in dest.iterdir())
    assert (dest / "c.png").resolve() == (val / "c.png").resolve()


def test_refuses_two_images_of_one_name(tmp_path):
    train = make_folder(tmp_path / "train", ["a.png"])
    val = make_folder(tmp_path / "val", ["a.png"])
    result = link_photos(tmp_path / "photos", train, val)
    assert result.returncode != 0
    assert "two images named a.png" in result.stderr


def test_a_missing_folder_is_named(tmp_path):
    result = link_photos(tmp_path / "photos", tmp_path / "nowhere")
    assert result.returncode != 0
    assert "image folder not found" in result.stderr and "nowhere" in result.stderr
