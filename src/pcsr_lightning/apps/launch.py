"""The console scripts' entry points (``pcsr``, ``pcsr-eval``, ``pcsr-train``, ``pcsr-study``).

Each app's module is imported inside the guard, not at the top: its imports (torch, Lightning, Hydra)
take seconds, and a Ctrl-C during them must end like one at any later moment, with one line and exit
code 130, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C


def run_app(module: str, name: str) -> int:
    """Import ``module`` and call its ``main``; Ctrl-C anywhere (imports included) gives 130 and one line."""
    try:
        code = importlib.import_module(module).main()
    except KeyboardInterrupt:
        print(f"interrupted: {name} stopped (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED
    return int(code or 0)


def pcsr() -> int:
    return run_app("pcsr_lightning.apps.cli", "pcsr")


def pcsr_eval() -> int:
    return run_app("pcsr_lightning.apps.eval_app", "pcsr-eval")


def pcsr_train() -> int:
    return run_app("pcsr_lightning.apps.train_app", "pcsr-train")


def pcsr_study() -> int:
    return run_app("pcsr_lightning.apps.study_app", "pcsr-study")


if __name__ == "__main__":
    apps = {"pcsr": pcsr, "pcsr-eval": pcsr_eval, "pcsr-train": pcsr_train, "pcsr-study": pcsr_study}
    sys.exit(apps[sys.argv.pop(1)]())
