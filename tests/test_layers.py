"""The one-way layers of pyproject.toml: kept by the package, and broken by one upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.is_file(),
                                reason="import-linter is not installed (pip install -e '.[dev]')")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under ``root/src``, with ``root/pyproject.toml``'s contracts."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("models/pcsr.py", "from pcsr_lightning.inference.router import cost_list"),
    ("inference/routed.py", "import pcsr_lightning.evaluation.evaluate"),
    ("io/checkpoint.py", "from pcsr_lightning.measure import flops"),
    ("data/sources.py", "from pcsr_lightning.inference import router"),  # siblings: neither imports the other
    ("inference/session.py", "import pcsr_lightning.data.bicubic"),
    ("bench/run.py", "import pcsr_lightning.evaluation.evaluate"),
])
def test_one_upward_import_breaks_the_contract(tmp_path, module, upward):
    shutil.copytree(ROOT / "src" / "pcsr_lightning", tmp_path / "src" / "pcsr_lightning",
                    ignore=shutil.ignore_patterns("__pycache__", "conf"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "pcsr_lightning" / module
    lines = target.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(("import ", "from ")) and "__future__" not in line)
    target.write_text("\n".join([*lines[:at], upward, *lines[at:]]) + "\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and module.split("/")[0] in result.stdout
