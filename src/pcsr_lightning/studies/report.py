"""A study's report from its finished jobs: ``summary.csv``, ``report.md`` (tables) and plots.

A table names the step whose rows it shows, the columns, and ``where`` (only rows with these values);
a plot names steps, the x and y columns and the keys that make one series each (a series' points are
joined in x order, as a k curve is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pcsr_lightning.evaluation.plot import Series, save_plot
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.runs import finished_jobs, format_value, summary_rows, write_summary


def _matches(row: Mapping, where: Mapping | None) -> bool:
    return all(row.get(k) == v for k, v in (where or {}).items())


def step_rows(rows: Sequence[dict], steps: Sequence[str], where: Mapping | None = None) -> list[dict]:
    """The summary rows of the jobs of ``steps`` (a job's folder starts with its step's name)."""
    return [r for r in rows if str(r["job"]).split("/")[0] in steps and _matches(r, where)]


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    def cell(value) -> str:
        if value is None:
            return ""
        return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else format_value(value)

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def series_of(rows: Sequence[dict], x: str, y: str, keys: Sequence[str]) -> list[Series]:
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get(x) is None or r.get(y) is None:
            continue
        groups.setdefault(tuple(r.get(k) for k in keys), []).append((float(r[x]), float(r[y])))
    return [Series(", ".join(f"{k}={format_value(v)}" for k, v in zip(keys, key, strict=True)) or y, sorted(points),
                   line=len(points) > 1)
            for key, points in groups.items()]


def write_report(study_dir: Path, out: Path, tables: Sequence[Mapping], plots: Sequence[Mapping],
                 title: str) -> list[Path]:
    """``summary.csv`` (every finished job), ``report.md`` with each table and plot under ``out``."""
    summary = write_summary(study_dir)
    rows = summary_rows(finished_jobs(study_dir))
    written = [p for p in (summary,) if p is not None]
    parts = [f"# Study {title}", "", f"Every job's rows: `{summary.name if summary else 'summary.csv'}`.", ""]
    for table in tables:
        chosen = step_rows(rows, list(table["steps"]), table.get("where"))
        heading = table.get("title", ", ".join(table["steps"]))
        parts += [f"## {heading}", "", markdown_table(chosen, table["columns"]), ""]
    for plot in plots:
        chosen = step_rows(rows, list(plot["steps"]), plot.get("where"))
        path = out / plot.get("file", "curve.png")
        x, y = plot.get("x", "gflops_paper"), plot.get("y", "psnr")
        written.append(save_plot(series_of(chosen, x, y, list(plot.get("series", []))), path,
                                 plot.get("title", title), log_x=bool(plot.get("log_x", False))))
        parts += [f"![{plot.get('title', title)}]({path.name})", ""]
    written.append(write_text("\n".join(parts), out / "report.md"))
    return written
