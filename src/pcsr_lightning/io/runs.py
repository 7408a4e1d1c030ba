"""The run-folder layout shared by ``pcsr-train -m``, ``pcsr-eval -m`` and ``pcsr-study``.

A sweep folder holds one job folder per job, named after the job's overrides (``k=0.5,skip_flat=0.2``);
each finished job leaves ``result.json`` there (its settings, its result rows, the files it made), written
last and atomically, so a job folder without it is a job that did not finish. ``summary.csv`` at the top
of the sweep folder has one line per result row of every finished job, the job's settings beside them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pcsr_lightning.io.files import write_text

RESULT = "result.json"
SUMMARY = "summary.csv"


@dataclass
class JobResult:
    """What one finished job leaves: its settings (``point``), its result rows, the values later jobs use."""

    job: str  # the job folder's path inside the sweep folder
    point: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def as_json(self) -> str:
        return json.dumps({"job": self.job, "point": self.point, "rows": self.rows, "values": self.values},
                          indent=1, default=_plain, allow_nan=False)


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not a result value")


def finite(value):
    """JSON has no nan or inf: such a number is written as null (an unmeasured cell)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_result(folder: str | Path, result: JobResult) -> Path:
    result.rows = [{k: finite(v) for k, v in row.items()} for row in result.rows]
    return write_text(result.as_json() + "\n", Path(folder) / RESULT)


def read_result(folder: str | Path) -> JobResult | None:
    """The job's result, or None when the job has not finished (no ``result.json``)."""
    path = Path(folder) / RESULT
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return JobResult(str(data["job"]), dict(data["point"]), list(data["rows"]), dict(data["values"]))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a job result ({err}); remove it to run the job again") from None


def job_folder_name(point: Mapping[str, object]) -> str:
    """``key=value`` pairs in key order, as Hydra names a folder after its overrides; '' for no settings."""
    return ",".join(f"{key}={format_value(point[key])}" for key in sorted(point))


def format_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def finished_jobs(sweep_dir: str | Path) -> list[JobResult]:
    """Every finished job under the sweep folder, in folder order."""
    root = Path(sweep_dir)
    found = sorted(p.parent for p in root.rglob(RESULT))
    return [r for r in (read_result(folder) for folder in found) if r is not None]


def summary_rows(results: Iterable[JobResult]) -> list[dict]:
    """One row per result row of each job: the job, its settings, then the row's own columns."""
    rows = []
    for result in results:
        for row in result.rows or [{}]:
            rows.append({"job": result.job, **result.point, **row})
    return rows


def csv_text(rows: Sequence[Mapping[str, object]]) -> str:
    """Rows as CSV, the columns in the order they first appear (rows may differ in their columns)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else format_value(v) for k, v in row.items()})
    return out.getvalue()


def write_summary(sweep_dir: str | Path) -> Path | None:
    """``summary.csv`` over every finished job of the sweep folder; None when no job has finished."""
    rows = summary_rows(finished_jobs(sweep_dir))
    if not rows:
        return None
    return write_text(csv_text(rows), Path(sweep_dir) / SUMMARY)
