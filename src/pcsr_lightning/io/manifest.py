"""``manifest.json``: the record of a training run that hands weights from stage to stage.

Contract (read by ``make reproduce-table``)::

    {"experiment": str, "backbone": "fsrcnn" | "carn" | "srresnet", "kind": "original" | "pcsr",
     "scale": the run's data.scale, a number or [min, max] (null in manifests written before it was kept),
     "final_checkpoint": "<absolute path of a project-format .ckpt>" or null until the last stage is done,
     "stages": [{"name": str, "status": "done" | "running", "checkpoint": str, "config": {...},
                 "metrics": {...}}]}

Every write replaces the whole file atomically.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pcsr_lightning.io.files import write_text

FILENAME = "manifest.json"
log = logging.getLogger(__name__)


@dataclass
class StageRecord:
    name: str
    status: str  # "running" or "done"
    checkpoint: str  # project checkpoint when done, the stage's Lightning checkpoint folder while running
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


@dataclass
class Manifest:
    experiment: str
    backbone: str
    kind: str
    final_checkpoint: str | None = None
    stages: list[StageRecord] = field(default_factory=list)
    scale: float | int | list | None = None  # data.scale: a number, or [min, max] for one model of every scale

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    def metric_rows(self) -> list[dict]:
        """One row per stage: its name and the plain values of its final metrics (a job's result rows)."""
        return [{"stage": s.name, **{k: v for k, v in s.metrics.items() if isinstance(v, (int, float, str))}}
                for s in self.stages]

    def put(self, record: StageRecord) -> None:
        for i, s in enumerate(self.stages):
            if s.name == record.name:
                self.stages[i] = record
                return
        self.stages.append(record)

    def save(self, run_dir: str | Path) -> Path:
        return write_text(json.dumps(asdict(self), indent=2) + "\n", Path(run_dir) / FILENAME)

    @staticmethod
    def load(run_dir: str | Path) -> Manifest:
        path = Path(run_dir) / FILENAME
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
                raise ValueError("not a JSON object with a list of stages")
            stages = [StageRecord(**s) for s in data.pop("stages")]
            return Manifest(**data, stages=stages)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"{path} is not a readable training manifest: {err}") from err


def open_run(run_dir: str | Path, fresh: Manifest, resume: bool, main_process: bool = True) -> Manifest:
    """The manifest to continue in ``run_dir``: ``fresh`` for a new run, the folder's own when resuming
    the same experiment. Refuses (ValueError) before anything in the folder is touched when the folder
    holds a run and ``resume`` is false, or holds another experiment's run."""
    run_dir = Path(run_dir)
    if not (run_dir / FILENAME).is_file():
        if resume:
            log.warning("resume=true but %s has no %s: starting the pipeline from the beginning", run_dir, FILENAME)
        return fresh
    if not resume:
        if not main_process:
            return fresh  # a DDP worker started after rank 0 wrote the manifest of this very run
        raise ValueError(f"{run_dir} already holds a training run ({FILENAME}); pass resume=true to continue it "
                         "or choose another folder")
    manifest = Manifest.load(run_dir)
    for key in ("experiment", "backbone", "kind", "scale"):
        if key == "scale" and None in (manifest.scale, fresh.scale):
            continue  # a manifest from before the scale was recorded
        if getattr(manifest, key) != getattr(fresh, key):
            raise ValueError(f"cannot resume {run_dir}: its {key} is {getattr(manifest, key)!r}, "
                             f"this config's is {getattr(fresh, key)!r}")
    return manifest
