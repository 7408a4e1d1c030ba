"""How a job of a Hydra app (``pcsr-train``, ``pcsr-eval``) ends when it fails.

- A single run prints one ``error:`` line and exits with the job's code (2: refused, nothing written);
  the folders Hydra created for the refused job are removed again when they are still empty.
- In a multirun (``-m``) with Hydra's own launcher, a failed job prints its line and the sweep goes on
  with the other jobs; at the end the failed ones are listed and the app exits with the highest code.
  With another launcher (submitit: jobs in other processes) the job raises instead, so the launcher
  sees it fail and Hydra reports it.

``JobReport`` is the Hydra callback (``hydra.callbacks`` in conf/train.yaml and conf/eval.yaml) that
does the listing and remembers the folders; at a multirun's end it also writes the sweep's
``summary.csv`` from the jobs' ``result.json`` (``record_result``; the layout ``pcsr-study`` shares,
``io.runs``).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from pcsr_lightning.io.runs import JobResult, write_result, write_summary

IN_PROCESS_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
_new_folders: list[Path] = []  # the run folder and the parents Hydra is about to create, deepest first


def record_result(out: Path, rows: list[dict], values: dict | None = None) -> Path:
    """A finished job's ``result.json`` in its folder: its overrides (those its folder is named after) as
    settings, its result rows, the files it made."""
    hydra = HydraConfig.get()
    excluded = set(hydra.job.config.override_dirname.exclude_keys)
    point = {}
    for override in hydra.overrides.task:
        key, _, value = str(override).partition("=")
        if key.lstrip("+~") not in excluded:
            point[key.lstrip("+~")] = value
    name = Path(hydra.runtime.output_dir).name if hydra.mode == RunMode.MULTIRUN else "."
    return write_result(out, JobResult(name, point, rows, values or {}))


class JobFailed(Exception):
    """A multirun job that failed, raised where the launcher runs jobs in other processes."""


@dataclass
class Failed:
    """What a failed multirun job returns to ``JobReport``."""

    code: int
    message: str


def fail(code: int, message: str, run_dir: Path | None = None) -> Failed:
    """End a failed job: one error line, then exit (single run), hand the failure to ``JobReport``
    (multirun, jobs in this process) or raise (other launchers)."""
    print(f"error: {message}", file=sys.stderr)
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        if run_dir is not None:
            remove_new_folders(run_dir)
        raise SystemExit(code)
    if hydra.launcher.get("_target_") != IN_PROCESS_LAUNCHER:
        raise JobFailed(message)
    return Failed(code, message)


def remove_new_folders(run_dir: Path) -> None:
    """Remove the run folder and the parents Hydra created for this run, as long as they are empty
    but for the config files Hydra itself wrote there (``hydra.output_subdir``)."""
    if not _new_folders or _new_folders[0] != run_dir.resolve():
        return
    root = logging.getLogger()
    for handler in list(root.handlers):  # the job's log file (not written yet): it must not reappear
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == _new_folders[0]:
            root.removeHandler(handler)
            handler.close()
    subdir = HydraConfig.get().output_subdir
    if subdir is not None:
        configs = run_dir / subdir
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            (configs / name).unlink(missing_ok=True)
        try:
            configs.rmdir()
        except OSError:
            pass
    for folder in _new_folders:
        try:
            folder.rmdir()  # only an empty folder goes
        except OSError:
            return


class JobReport(Callback):
    """Remembers which folders a single run creates; lists a multirun's failed jobs at its end."""

    def __init__(self) -> None:
        self.jobs: list[tuple[str, Failed]] = []
        self.count = 0

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir)).expanduser().resolve()
        _new_folders[:] = [p for p in (run_dir, *run_dir.parents) if not p.exists()]

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        self.count += 1
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return.return_value, Failed):
            overrides = " ".join(job_return.overrides or []) or "no overrides"
            self.jobs.append((f"#{config.hydra.job.num} ({overrides})", job_return.return_value))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summary = write_summary(Path(str(config.hydra.sweep.dir)))
        if summary is not None:
            print(f"sweep summary: {summary}")
        if not self.jobs:
            return
        print(f"error: {len(self.jobs)} of {self.count} job(s) failed:", file=sys.stderr)
        for name, failed in self.jobs:
            print(f"  {name}: {failed.message}", file=sys.stderr)
        raise SystemExit(max(failed.code for _, failed in self.jobs))
