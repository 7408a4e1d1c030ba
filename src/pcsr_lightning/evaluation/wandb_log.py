"""Results to a wandb run (offline unless WANDB_MODE says otherwise). wandb is imported lazily: the
GPU machines do not have it, and nothing else needs it."""

from __future__ import annotations

import os
from collections.abc import Sequence


def log_results(name: str, columns: Sequence[str], rows: Sequence[dict], images: dict[str, str],
                project: str = "pcsr-lightning") -> None:
    """One wandb.Table of ``rows`` and one wandb.Image per PNG path in ``images``."""
    try:
        import wandb
    except ImportError as err:
        raise ValueError("--wandb needs the wandb package (pip install wandb)") from err
    run = wandb.run or wandb.init(project=project, job_type=name, mode=os.environ.get("WANDB_MODE", "offline"))
    data = [[r.get(c) for c in columns] for r in rows]
    payload = {f"{name}/table": wandb.Table(columns=list(columns), data=data)}
    payload.update({f"{name}/{key}": wandb.Image(str(path)) for key, path in images.items()})
    run.log(payload)
