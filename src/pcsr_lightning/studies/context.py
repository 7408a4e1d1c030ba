"""What every action receives and returns (apart from ``actions`` so that action modules beside it, e.g.
``training_studies``, can take and give the same types while ``actions.ACTIONS`` registers them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig


@dataclass
class Context:
    """Where a job runs: the photo folder of its step's role (None: the step reads no photos), its own
    folder, the study's folder, the whole composed config (for the report), every folder of the step's
    roles (a training step with ``roles: [train, val]`` reads both) and the job's settings."""

    photos: Path | None
    out: Path
    study_dir: Path
    folders: Mapping[str, Path | None] = field(default_factory=dict)  # every role's folder
    config: DictConfig | None = None
    role_folders: Sequence[Path] = ()
    point: Mapping[str, object] = field(default_factory=dict)  # the job's own settings (study.point)


@dataclass
class Outcome:
    rows: list[dict] = field(default_factory=list)
    values: dict = field(default_factory=dict)
