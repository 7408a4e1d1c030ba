"""A study's plan: its photo folders by role, its steps in order, and the jobs each step runs.

A step either runs an ``action`` (one job per point of its grid, crossed with the jobs of the steps it
``use``s) or ``select``s values from the results of an earlier step of the validation role. The plan is
checked whole before any job runs, so a study that would choose a setting on its report photos, or
report on photos it trained or chose on, is refused before anything is written.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pcsr_lightning.io.runs import JobResult, job_folder_name

ROLES = ("train", "val", "report")
CHOOSING_ROLES = ("val",)  # a selection reads results of these roles only
# actions that learn from their photos: they may read the train and val roles, never report
LEARNING_ACTIONS = ("train", "fit_fill", "subset", "budget_calibration")
# the actions a step may run (``studies.actions.ACTIONS``, which needs torch; a test keeps the two equal)
ACTION_NAMES = ("import_release", "crops", "mosaics", "eval", "bench", "bench_runtime", "fit_fill", "train",
                "report", "swap", "compare", "subset", "upsampler_fit", "routing_oracle",
                "train_speed", "div2k_scale", "png_level", "upscale_runs", "paper_table", "demo",
                "budget_calibration", "gate_grid")


class StudyError(ValueError):
    """A study that cannot run as written (names the key); nothing has been written when it is raised."""


@dataclass(frozen=True)
class Step:
    name: str
    action: str | None = None
    role: str | None = None  # the photo folder its jobs read; inherited from the steps it uses
    grid: Mapping[str, Sequence] = field(default_factory=dict)
    use: Sequence[str] = ()
    select: Mapping | None = None
    roles: Sequence[str] = ()  # every role whose photos its jobs read (``roles: [train, val]``); role is the first


@dataclass(frozen=True)
class Job:
    """One job of a step: its settings (grid values, chosen values, values of the used jobs)."""

    step: str
    point: Mapping[str, object]
    named: Sequence[str]  # the keys of ``point`` its folder is named after

    @property
    def folder(self) -> str:
        name = job_folder_name({k: self.point[k] for k in self.named})
        return f"{self.step}/{name}" if name else self.step


@dataclass(frozen=True)
class Plan:
    name: str
    steps: Sequence[Step]
    photos: Mapping[str, Path | None]

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)


def plan_of(study: Mapping, photos: Mapping, actions: Sequence[str]) -> Plan:
    """The checked plan of a ``study`` node (plain, interpolations unresolved) and the ``photos`` node."""
    name = study.get("name")
    if not isinstance(name, str) or not name:
        raise StudyError("study.name must be set (the study's folder under studies/)")
    steps_node = study.get("steps") or {}
    if not isinstance(steps_node, Mapping) or not steps_node:
        raise StudyError(f"study {name} has no steps (study.steps)")
    steps: list[Step] = []
    for key, node in steps_node.items():
        steps.append(_step(str(key), node, steps, actions))
    return Plan(name, steps, check_photos(photos))


def _step(name: str, node, earlier: list[Step], actions: Sequence[str]) -> Step:
    where = f"study.steps.{name}"
    if not isinstance(node, Mapping):
        raise StudyError(f"{where} must be a mapping with an action or a select")
    known = {"action", "role", "roles", "grid", "use", "select", "args"}
    unknown = sorted(set(node) - known)
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; a step takes {sorted(known)}")
    action, select = node.get("action"), node.get("select")
    if (action is None) == (select is None):
        raise StudyError(f"{where} needs exactly one of action or select")
    if action is not None and action not in actions:
        raise StudyError(f"{where}.action {action!r} is not an action of the studies (the actions: "
                         f"{', '.join(actions)})")
    names = [s.name for s in earlier]
    use = list(node.get("use") or [])
    for used in use:
        if used not in names:
            raise StudyError(f"{where}.use names {used!r}, which is not an earlier step (earlier: {names})")
    roles = _roles(where, node)
    role = roles[0] if roles else None
    inherited = {s.role for s in earlier if s.name in use and s.role is not None}
    if role is None and len(inherited) == 1:
        role = inherited.pop()
        roles = [role]
    if action in LEARNING_ACTIONS and "report" in roles:
        raise StudyError(f"{where} ({action}) reads the report photos: a step that trains or fits may read "
                         "the train and val photos only (roles: [train, val])")
    grid = node.get("grid") or {}
    if not isinstance(grid, Mapping) or not all(isinstance(v, Sequence) and not isinstance(v, str) and len(v)
                                                for v in grid.values()):
        raise StudyError(f"{where}.grid must map each setting to a non-empty list of values")
    if select is not None:
        select = _check_select(where, select, earlier)
        role, roles = None, []
    return Step(name, action, role, dict(grid), use, select, tuple(roles))


def _roles(where: str, node: Mapping) -> list[str]:
    """The roles a step reads: ``role: val`` or ``roles: [train, val]`` (not both)."""
    if node.get("role") is not None and node.get("roles") is not None:
        raise StudyError(f"{where} takes role or roles, not both")
    roles = node.get("roles")
    if roles is None:
        roles = [] if node.get("role") is None else [node["role"]]
    elif isinstance(roles, str) or not isinstance(roles, Sequence) or not roles:
        raise StudyError(f"{where}.roles must be a non-empty list of roles, e.g. [train, val]")
    for role in roles:
        if role not in ROLES:
            raise StudyError(f"{where}.role must be one of {list(ROLES)}, got {role!r}")
    if len(set(roles)) != len(roles):
        raise StudyError(f"{where}.roles names a role twice: {list(roles)}")
    return list(roles)


def _check_select(where: str, select, earlier: list[Step]) -> Mapping:
    if not isinstance(select, Mapping) or "from" not in select or "choose" not in select:
        raise StudyError(f"{where}.select needs from (a step) and choose (the setting it picks)")
    source = next((s for s in earlier if s.name == select["from"]), None)
    if source is None:
        raise StudyError(f"{where}.select.from names {select['from']!r}, which is not an earlier step")
    if not source.roles or any(role not in CHOOSING_ROLES for role in source.roles):
        raise StudyError(f"{where} chooses on step {source.name!r}, whose photos are "
                         f"{'+'.join(source.roles) or 'none'}; a setting may be chosen on the val photos only")
    return dict(select)


def check_photos(photos: Mapping) -> dict[str, Path | None]:
    """The role folders, resolved; a report folder that is, holds or lies in a train or val folder, or
    shares a photo file with one, is refused (the report would show photos that chose or trained)."""
    unknown = sorted(set(photos) - set(ROLES))
    if unknown:
        raise StudyError(f"photos.{unknown[0]} is not a role; the roles: {', '.join(ROLES)}")
    folders = {role: None if photos.get(role) in (None, "") else Path(str(photos[role])).expanduser().resolve()
               for role in ROLES}
    report = folders["report"]
    if report is None:
        return folders
    for role in ("train", "val"):
        other = folders[role]
        if other is None:
            continue
        if report == other or other in report.parents or report in other.parents:
            raise StudyError(f"photos.report ({report}) is also the {role} folder ({other}): "
                             "a study reports on photos that neither trained nor chose its settings")
        shared = _files(report) & _files(other)
        if shared:
            raise StudyError(f"photos.report and photos.{role} share {len(shared)} photo(s), e.g. "
                             f"{sorted(shared)[0]}: a study reports on photos that neither trained nor chose")
    return folders


def _files(folder: Path) -> set[Path]:
    """Every file under the folder, resolved (links followed): two folders may not share one."""
    if not folder.is_dir():
        return set()
    return {p.resolve() for p in folder.rglob("*") if p.is_file()}


def jobs_of(step: Step, done: Mapping[str, list[JobResult]], chosen: Mapping[str, list[dict]]) -> list[Job]:
    """The step's jobs: its grid's points crossed with each used step's jobs (or chosen values), keeping
    the combinations that agree on the settings they share."""
    keys = list(step.grid)
    combos: list[tuple[dict, list[str]]] = [
        (dict(zip(keys, values, strict=True)), list(keys)) for values in itertools.product(*step.grid.values())]
    for used in step.use:
        options = ([(c, list(c)) for c in chosen[used]] if used in chosen else
                   [({**r.point, **r.values}, list(r.point)) for r in done[used]])
        merged = []
        for (point, named), (other, other_named) in itertools.product(combos, options):
            if all(point[k] == other[k] for k in point.keys() & other.keys()):
                merged.append(({**other, **point}, named + [k for k in other_named if k not in named]))
        combos = merged
    return [Job(step.name, point, [k for k in named if _nameable(point[k])]) for point, named in combos]


def _nameable(value) -> bool:
    return isinstance(value, (int, float, bool)) or value is None or (isinstance(value, str) and "/" not in value)
