"""experiments/ holds machine probes and the photo-pool builder only, each run on the installed package:
no script edits sys.path or imports another, at most four shell scripts, and the package never imports
experiments. The check is tested on small trees that break each rule, then run on the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiment_scripts import EXPERIMENTS, layout_violations

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "pcsr_lightning"


def tree(root: Path, files: dict[str, str]) -> tuple[Path, Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "experiments", root / "pkg"


GOOD = {"experiments/probes/a.py": "import torch\nfrom pcsr_lightning.io import images\n",
        "experiments/probes/b.sh": "pcsr bench\n", "experiments/pool/p.py": "import os\n",
        "pkg/m.py": "import os\n"}


def test_a_tree_that_keeps_the_rules_passes(tmp_path):
    assert layout_violations(*tree(tmp_path, GOOD)) == []


@pytest.mark.parametrize("extra, message", [
    ({"experiments/probes/c.py": "import sys\nsys.path.insert(0, '.')\n"}, "edits or reads sys.path"),
    ({"experiments/probes/c.py": "from sys import path\npath.append('..')\n"}, "imports sys.path"),
    ({"experiments/probes/c.py": "from p import x\n"}, "imports the script p"),
    ({"experiments/probes/c.py": "import experiments.pool.p\n"}, "imports the script experiments.pool.p"),
    ({"experiments/probes/c.sh": "PYTHONPATH=src pcsr bench\n"}, "sets PYTHONPATH"),
    ({f"experiments/s{i}.sh": "true\n" for i in range(4)}, "5 shell scripts, at most 4"),
    ({"pkg/n.py": "from experiments.probes import a\n"}, "the package imports experiments.probes"),
])
def test_each_rule_broken_is_named(tmp_path, extra, message):
    found = layout_violations(*tree(tmp_path, {**GOOD, **extra}))
    assert found and any(message in line for line in found), found


def test_the_repository_keeps_the_rules(tmp_path):
    copy = tmp_path / "experiments"
    for path in EXPERIMENTS.rglob("*"):
        if path.is_file() and "results" not in path.relative_to(EXPERIMENTS).parts:
            (copy / path.relative_to(EXPERIMENTS)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(EXPERIMENTS)).write_bytes(path.read_bytes())
    assert layout_violations(copy, PACKAGE) == []
    kept = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert kept == ["README.md", "pool/photo_pool.md", "pool/photo_pool.py", "probes/busy_bench.sh",
                    "probes/cache_sizes_cpu.py", "probes/layout_cpu.py", "probes/matmul_isa_cpu.py",
                    "release/side_by_side.py", "speed_gpu.sh"]
