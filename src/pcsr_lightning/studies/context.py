"""What every action receives and returns: the job's context and its outcome (a module of their own, so the
modules of actions beside ``actions`` import them without a cycle through ``ACTIONS``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig


@dataclass
class Context:
    """Where a job runs: the photo folder of its step's role (None: the step reads no photos), its own
    folder, the study's folder, and the whole composed config (for the report)."""

    photos: Path | None
    out: Path
    study_dir: Path
    folders: Mapping[str, Path | None] = field(default_factory=dict)  # every role's folder
    config: DictConfig | None = None


@dataclass
class Outcome:
    rows: list[dict] = field(default_factory=list)
    values: dict = field(default_factory=dict)
