"""Load a script of ``experiments/`` as a module, so its functions can be tested on tiny settings."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_script(name: str) -> ModuleType:
    """``experiments/<name>.py`` (``pool/photo_pool``: in a folder) imported once per test session under the
    name ``experiments_<name>`` (``/`` as ``_``)."""
    key = "experiments_" + name.replace("/", "_")
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


MAX_SHELL_SCRIPTS = 4


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if p.is_file())


FOREIGN = "release"  # experiments/release/ runs the authors' own code: it puts that code (never ours) on sys.path


def layout_violations(experiments: Path, package: Path) -> list[str]:
    """What breaks the rule of ``experiments/``: scripts that run on the installed package alone, never
    editing ``sys.path`` or ``PYTHONPATH`` nor importing one another, at most four shell scripts; and a
    package that never imports ``experiments``. One line per violation, naming the file."""
    found = []
    scripts = {p.stem for p in _python_files(experiments)}
    for path in _python_files(experiments):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and path.parent.name != FOREIGN and \
                    isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.append(f"{path}:{node.lineno}: edits or reads sys.path")
            if isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
                found.append(f"{path}:{node.lineno}: imports sys.path")
            for name in _imported(node):
                if name.split(".")[0] in scripts or name.split(".")[0] == "experiments":
                    found.append(f"{path}:{node.lineno}: imports the script {name} (scripts import the package only)")
    shells = sorted(p for p in experiments.rglob("*.sh") if p.is_file())
    for path in shells:
        if "PYTHONPATH" in path.read_text():
            found.append(f"{path}: sets PYTHONPATH")
    if len(shells) > MAX_SHELL_SCRIPTS:
        found.append(f"{experiments}: {len(shells)} shell scripts, at most {MAX_SHELL_SCRIPTS}: "
                     + ", ".join(p.name for p in shells))
    for path in _python_files(package):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported(node):
                if name.split(".")[0] == "experiments":
                    found.append(f"{path}:{node.lineno}: the package imports {name}")
    return found


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []
