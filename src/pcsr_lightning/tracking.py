"""How a job shows up in an experiment tracker: its run's name, group, job type and tags, a wandb run
that is always finished, and a reader for offline wandb runs (``run-*.wandb``) so tests and scripts can
check what a run holds without syncing it.

wandb (the ``wandb`` extra) and Hydra (the ``train`` extra) are imported only inside the functions that
need them: machines without wandb can still train with ``logger=csv``, and ``pcsr eval`` runs without Hydra.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pcsr_lightning.extras import need

DEFAULT_PROJECT = "pcsr-lightning"


def job_overrides() -> list[str]:
    """The running Hydra job's command-line overrides (one value each under ``-m``); none outside Hydra."""
    HydraConfig = need("hydra.core.hydra_config", "a Hydra job's overrides").HydraConfig
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def sweep_name() -> str | None:
    """``parent/folder`` of the sweep folder when the job is one of a ``-m`` sweep, else None."""
    HydraConfig = need("hydra.core.hydra_config", "a Hydra sweep's name").HydraConfig
    multirun = need("hydra.types", "a Hydra sweep's name").RunMode.MULTIRUN
    if not HydraConfig.initialized() or HydraConfig.get().mode != multirun:
        return None
    folder = Path(HydraConfig.get().sweep.dir)
    return f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name


def run_name(base: str, overrides: Sequence[str], ignore: Sequence[str] = ()) -> str:
    """``base`` and the overrides that identify the job, keys shortened to their last part:
    ``run_name("carn_pcsr", ["experiment=carn_pcsr", "eval.k=0.5"], ["experiment"]) == "carn_pcsr k=0.5"``.
    An override whose key, or the key's first part, is in ``ignore`` is left out."""
    parts = [base]
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+~")
        if not sep or key in ignore or key.split(".")[0] in ignore:
            continue
        parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    return " ".join(parts)


def model_tags(backbone: str, kind: str, num_classes: int | None) -> list[str]:
    """Tags to filter runs by: backbone, kind (pcsr / original) and, for PCSR, M."""
    tags = [backbone, kind]
    if kind == "pcsr" and num_classes is not None:
        tags.append(f"M={int(num_classes)}")
    return tags


def wandb_mode(offline: bool = True) -> str:
    """WANDB_MODE wins; otherwise offline unless asked for."""
    return os.environ.get("WANDB_MODE") or ("offline" if offline else "online")


@contextlib.contextmanager
def wandb_run(name: str, group: str, job_type: str, tags: Sequence[str], config: dict, directory: str | Path,
              project: str = DEFAULT_PROJECT) -> Iterator[Any]:
    """A wandb run with its files in ``directory``, finished when the block ends (exit code 1 when it raised)."""
    wandb = need("wandb", "logging to wandb")  # slow to import and only needed when logging to it
    Path(directory).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, name=name, group=group, job_type=job_type, tags=list(tags), config=config,
                     dir=str(directory), mode=wandb_mode(), reinit="finish_previous")
    failed = True
    try:
        yield run
        failed = False
    finally:
        run.finish(exit_code=1 if failed else 0)


# ------------------------------------------------------------------ offline run files

_BLOCK = 32 * 1024
_HEADER = 7  # crc32 (4), length (2), record type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> Iterator[bytes]:
    """The payloads of wandb's transaction log: a 7-byte file header, then LevelDB-style log blocks."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb run file")
    pos, pending = 7, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:
            pos += left - _HEADER  # zero padding up to the next block
        else:
            raise ValueError(f"{path}: unknown record type {kind} at byte {pos}")


def _config_value(value_json: str) -> Any:
    value = json.loads(value_json)
    return value.get("value", value) if isinstance(value, dict) and set(value) <= {"value", "desc"} else value


def _update_config(config: dict, items) -> None:
    for item in items:
        path = list(item.nested_key) or [item.key]
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _config_value(item.value_json)


def read_offline_run(folder: str | Path) -> dict:
    """What an offline run holds: ``name, group, job_type, tags, config, history`` (one dict per logged
    row), ``metrics`` (define_metric: name or glob -> step metric), ``summary``, ``exit_code`` and
    ``files`` (paths under the run's ``files/``)."""
    from wandb.proto import wandb_internal_pb2 as pb  # wandb is slow to import and only needed when logging to it

    folder = Path(folder)
    found = sorted(folder.glob("run-*.wandb"))
    if not found:
        raise FileNotFoundError(f"no run-*.wandb in {folder}")
    run: dict = {"name": None, "group": None, "job_type": None, "tags": [], "config": {}, "history": [],
                 "metrics": {}, "summary": {}, "exit_code": None}
    for payload in _records(found[0]):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(name=r.display_name, group=r.run_group, job_type=r.job_type, tags=list(r.tags))
            _update_config(run["config"], r.config.update)
        elif kind == "config":
            _update_config(run["config"], record.config.update)
        elif kind == "history":
            run["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in record.history.item})
        elif kind == "metric":
            m = record.metric
            run["metrics"][m.name or m.glob_name] = m.step_metric
        elif kind == "summary":
            run["summary"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in record.summary.update})
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    files = folder / "files"
    run["files"] = sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file()) if files.is_dir() else []
    return run


def offline_runs(folder: str | Path) -> list[Path]:
    """The offline run folders under ``folder`` (``.../wandb/offline-run-*``), oldest first."""
    return sorted(Path(folder).rglob("offline-run-*"))
