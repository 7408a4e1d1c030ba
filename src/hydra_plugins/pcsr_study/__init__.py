"""The sweeper of ``pcsr-study``: Hydra finds sweepers only in the ``hydra_plugins`` package, so this thin
class lives here and the study's logic in ``pcsr_lightning.studies.driver``."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from pcsr_lightning.studies.driver import StudyDriver


class StudySweeper(Sweeper):
    """Runs a study's steps in order, each step's jobs through the configured launcher."""

    def __init__(self) -> None:
        self.driver: StudyDriver | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.driver = StudyDriver(hydra_context, task_function, config)

    def sweep(self, arguments: Sequence[str]) -> None:
        assert self.driver is not None, "setup() comes first"
        self.driver.run(arguments)
