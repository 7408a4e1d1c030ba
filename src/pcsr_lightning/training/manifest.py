"""``manifest.json``: the record of a training run that hands weights from stage to stage.

Contract (read by ``make reproduce-table``)::

    {"experiment": str, "backbone": "fsrcnn" | "carn" | "srresnet", "kind": "original" | "pcsr",
     "final_checkpoint": "<absolute path of a project-format .ckpt>" or null until the last stage is done,
     "stages": [{"name": str, "status": "done" | "running", "checkpoint": str, "config": {...},
                 "metrics": {...}}]}

Every write replaces the whole file atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pcsr_lightning.io.files import write_text

FILENAME = "manifest.json"


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

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

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
            stages = [StageRecord(**s) for s in data.pop("stages")]
            return Manifest(**data, stages=stages)
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path} is not a readable training manifest: {err}") from err
