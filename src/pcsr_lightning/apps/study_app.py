"""pcsr-study: run a study (``conf/study/NAME.yaml``) with ``pcsr-study study=NAME photos.val=... ...``.

The study's sweeper (``studies.driver``) plans the whole study, refuses it before writing anything when it
cannot run as written (exit 2), and launches each step's jobs on the configured Hydra launcher; this
module's ``main`` is what each job runs.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pcsr_lightning.apps.jobs import fail
from pcsr_lightning.config import config_dir, register_resolvers
from pcsr_lightning.extras import MissingExtra
from pcsr_lightning.studies.jobs import run_study_job

register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="study")
def main(cfg: DictConfig):
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir)
    try:
        run_study_job(cfg, out, Path(str(hydra_cfg.sweep.dir)))
    except (InstantiationException, ValueError, FileNotFoundError, OmegaConfBaseException, MissingExtra) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        return fail(2, str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)
    return None


if __name__ == "__main__":
    main()
