"""One job of a study: the step's action on the step's photos, its result written last (``io.runs``)."""

from __future__ import annotations

import inspect
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pcsr_lightning.io.runs import JobResult, write_result
from pcsr_lightning.studies.actions import ACTIONS, Context
from pcsr_lightning.studies.driver import study_plan
from pcsr_lightning.studies.plan import StudyError


def run_study_job(cfg: DictConfig, out: Path, study_dir: Path) -> JobResult:
    """Run the job ``cfg.study.job`` names (its settings in ``cfg.study.point``) and write its result."""
    if not cfg.study.get("job"):
        raise StudyError("a study job needs study.job: run studies with pcsr-study study=NAME, which sets it")
    plan = study_plan(cfg)
    step = plan.step(str(cfg.study.job))
    node = cfg.study.steps[step.name]
    args = OmegaConf.to_container(node.get("args") or OmegaConf.create({}), resolve=True)
    point = OmegaConf.to_container(cfg.study.get("point") or OmegaConf.create({}), resolve=True)
    ctx = Context(plan.photos.get(step.role) if step.role else None, out, study_dir, plan.photos, cfg,
                  [plan.photos[r] for r in step.roles if plan.photos.get(r) is not None], point)
    action = ACTIONS[step.action]
    try:
        inspect.signature(action).bind(ctx, **args)
    except TypeError as err:
        raise StudyError(f"study.steps.{step.name}.args: {err} (action {step.action})") from None
    outcome = action(ctx, **args)
    result = JobResult(str(cfg.study.folder or step.name), point, outcome.rows, outcome.values)
    write_result(out, result)
    return result
