"""Running a study's plan on Hydra's launcher: the steps in order, each step's jobs as one launch.

``pcsr-study`` runs in Hydra's multirun mode with ``StudySweeper`` (hydra_plugins/pcsr_study) as its
sweeper; the sweeper hands its launcher, whichever is configured (``hydra/launcher``: Hydra's own,
submitit local or SLURM), to ``StudyDriver``. Everything here is light (no torch): Hydra imports the
sweeper's module for every app it starts. A job that finished before (its ``result.json``) is not
launched again, so running the same command again resumes an interrupted study; each job folder is
named after the job's settings (``io.runs``), and ``summary.csv`` covers every job.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pcsr_lightning.io.runs import JobResult, read_result, write_result, write_summary
from pcsr_lightning.studies.plan import ACTION_NAMES, Job, Plan, StudyError, jobs_of, plan_of
from pcsr_lightning.studies.select import NothingChosen, choose

REFUSED = 2  # a study that cannot run as written; nothing written
ALWAYS_AGAIN = ("report",)  # actions run again on a resumed study: a report covers every job there is now


def study_plan(config: DictConfig) -> Plan:
    """The checked plan of a composed ``pcsr-study`` config. Each step's ``args`` stay unresolved (they
    may name a job's own settings, ``${study.point.KEY}``, which only a job has)."""
    try:
        steps = {}
        for name, node in (config.study.get("steps") or {}).items():
            if not isinstance(node, DictConfig):
                steps[name] = node
                continue
            steps[name] = {key: OmegaConf.to_container(node, resolve=False)[key] if key == "args" else
                           _resolved(node, key) for key in node}
        study = {"name": config.study.get("name"), "steps": steps}
        photos = OmegaConf.to_container(config.photos, resolve=True)
    except OmegaConfBaseException as err:
        raise StudyError(str(err).splitlines()[0]) from None
    return plan_of(study, photos, ACTION_NAMES)


def _resolved(node: DictConfig, key: str):
    value = node[key]
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def override_value(value) -> str:
    """A value in Hydra's override grammar: numbers and booleans bare, strings quoted."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def job_overrides(job: Job) -> list[str]:
    return [f"study.job={job.step}", f"study.folder={override_value(job.folder)}",
            *(f"+study.point.{key}={override_value(value)}" for key, value in job.point.items())]


def refuse_sweeps(arguments: Sequence[str]) -> None:
    """A study's grid lives in its config: a sweep on the command line (``k=0,1``) is refused."""
    for argument in arguments:
        key, _, value = argument.partition("=")
        if "," in value and not value.strip().startswith(("[", "{", "'", '"')):
            raise StudyError(f"{argument}: a study sweeps what its config's grids say (study.steps.*.grid); "
                             "give one value per setting")


def job_code(job: Job, ret: JobReturn) -> int:
    """A failed job's exit code; a job that raised (not refused by ``apps.jobs.fail``) is named with its
    error, which the launcher kept instead of printing."""
    if ret.status == JobStatus.COMPLETED:
        return getattr(ret.return_value, "code", 1)
    try:
        ret.return_value  # re-raises the job's exception
    except Exception as err:  # noqa: BLE001 - reported, then the study stops
        print(f"error: job {job.folder}: {type(err).__name__}: {err}", file=sys.stderr)
    return 1


class StudyDriver:
    def __init__(self, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig):
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.launched = 0

    def run(self, arguments: Sequence[str]) -> None:
        try:
            plan = study_plan(self.config)
            refuse_sweeps(arguments)
        except StudyError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(REFUSED) from None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        done: dict[str, list[JobResult]] = {}
        chosen: dict[str, list[dict]] = {}
        for step in plan.steps:
            if step.select is not None:
                chosen[step.name] = self.select(step.name, step.select, done, sweep_dir)
                continue
            jobs = jobs_of(step, done, chosen)
            again = step.action in ALWAYS_AGAIN
            done[step.name] = self.launch(step.name, jobs, list(arguments), sweep_dir, again)
        summary = write_summary(sweep_dir)
        print(f"study {plan.name}: done; {summary}")

    def select(self, name: str, select: dict, done: dict, sweep_dir: Path) -> list[dict]:
        try:
            picks = choose(select, done[select["from"]])
        except (NothingChosen, ValueError) as err:
            print(f"error: study step {name}: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        write_result(sweep_dir / name, JobResult(name, {}, picks, {}))
        for pick in picks:
            print(f"study step {name}: chose {', '.join(f'{k}={v}' for k, v in pick.items())}")
        return picks

    def launch(self, step: str, jobs: list[Job], arguments: list[str], sweep_dir: Path, again: bool = False
               ) -> list[JobResult]:
        todo = [job for job in jobs if again or read_result(sweep_dir / job.folder) is None]
        print(f"study step {step}: {len(jobs)} job(s)"
              + (f", {len(jobs) - len(todo)} finished before (not run again)" if len(todo) < len(jobs) else ""))
        if todo:
            returns = self.launcher.launch([arguments + job_overrides(job) for job in todo],
                                           initial_job_idx=self.launched)
            self.launched += len(todo)
            failed = [(job, ret) for job, ret in zip(todo, returns, strict=True)
                      if ret.status != JobStatus.COMPLETED or read_result(sweep_dir / job.folder) is None]
            if failed:
                codes = [job_code(job, ret) for job, ret in failed]
                print(f"error: study step {step}: {len(failed)} of {len(todo)} job(s) failed: "
                      + ", ".join(job.folder for job, _ in failed), file=sys.stderr)
                raise SystemExit(max(codes))
        return [read_result(sweep_dir / job.folder) for job in jobs]
