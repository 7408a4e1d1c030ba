"""Two models' PSNR/GFLOPs curves side by side: the PSNR gap at equal cost.

Curves from different checkpoints sit at different GFLOPs for the same k (the routing depends on the
classifier), so they are compared at equal GFLOPs: the reference curve is interpolated linearly at each
point of the other curve inside its GFLOPs range, and the other curve at each of the reference's points.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

Point = tuple[float, float]  # (GFLOPs, PSNR)


def interpolate(curve: Sequence[Point], gflops: float) -> float | None:
    """PSNR of ``curve`` at ``gflops`` by linear interpolation; None outside its GFLOPs range."""
    pts = sorted(curve)
    if not pts or not pts[0][0] <= gflops <= pts[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= gflops <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (gflops - x0) / (x1 - x0)
    return pts[0][1]  # a single point


def gaps_at_equal_gflops(reference: Sequence[Point], other: Sequence[Point]) -> list[dict]:
    """For each point of ``other``: its GFLOPs and PSNR, the reference's PSNR at those GFLOPs, the gap
    (other - reference; None where the reference curve does not reach)."""
    rows = []
    for gflops, value in sorted(other):
        ref = interpolate(reference, gflops)
        rows.append({"gflops": gflops, "psnr": value, "reference_psnr": ref,
                     "gap_db": None if ref is None else value - ref})
    return rows


def worst_gap(rows: Sequence[dict]) -> float | None:
    """The most negative gap (other below reference), None when no point was comparable."""
    gaps = [r["gap_db"] for r in rows if r["gap_db"] is not None]
    return min(gaps) if gaps else None


def worst_gaps_both_ways(reference: Sequence[Point], other: Sequence[Point]) -> dict:
    """The worst gap (other - reference) measured at the other curve's points and at the reference's
    (there the other curve is interpolated): a curve sampled sparsely where the other bends is caught
    from either side. ``either``: the lower of the two."""
    at_other = worst_gap(gaps_at_equal_gflops(reference, other))
    # at the reference's points the rows hold reference - other: the worst is the largest of those
    reverse = [r["gap_db"] for r in gaps_at_equal_gflops(other, reference) if r["gap_db"] is not None]
    at_reference = -max(reverse) if reverse else None
    found = [g for g in (at_other, at_reference) if g is not None]
    return {"at_other": at_other, "at_reference": at_reference, "either": min(found) if found else None}


# The columns a comparison reads; every summary CSV of ``pcsr eval`` has them.
SUMMARY_NEEDS = ("setting", "k", "psnr", "gflops_paper", "heavy_share")
TEXT_COLUMNS = ("model", "setting")


def read_summary(path: str | Path) -> list[dict]:
    """A summary CSV written by ``pcsr eval --summary``, numbers as floats (empty cells None). A file
    without the columns ``SUMMARY_NEEDS``, without rows, or with a cell that is not a number is refused
    naming the file (and the row and column)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"summary CSV not found: {path}")
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise ValueError(f"{path} is empty: not a `pcsr eval --summary` CSV")
            missing = [c for c in SUMMARY_NEEDS if c not in reader.fieldnames]
            if missing:
                raise ValueError(f"{path} is not a `pcsr eval --summary` CSV: no column {', '.join(missing)}")
            for line, row in enumerate(reader, start=2):
                if None in row:
                    raise ValueError(f"{path}, line {line}: more cells than the header has columns")
                rows.append({k: v if k in TEXT_COLUMNS else _number(v, path, line, k) for k, v in row.items()})
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path} is not a readable CSV file: {err}") from err
    if not rows:
        raise ValueError(f"{path} has a header but no rows: an empty summary")
    for line, row in enumerate(rows, start=2):
        if row["setting"] in ("k", "all-light", "all-heavy") and (row["psnr"] is None or row["gflops_paper"] is None):
            raise ValueError(f"{path}, line {line}: a {row['setting']} row needs a finite psnr and gflops_paper")
    return rows


def split_by_threshold(label: str, summary: Sequence[dict]) -> dict[str, list[dict]]:
    """A summary with flat-tile gate rows as several curves: ``label`` (the rows without the gate) and
    ``label skip=T`` per threshold T."""
    curves: dict[str, list[dict]] = {label: [r for r in summary if r.get("skip_flat") is None]}
    for threshold in sorted({r["skip_flat"] for r in summary if r.get("skip_flat") is not None}):
        curves[f"{label} skip={threshold:g}"] = [r for r in summary if r.get("skip_flat") == threshold]
    return {name: rows for name, rows in curves.items() if rows}


def _number(text: str | None, path: Path, line: int, column: str):
    """A cell as a float: empty, nan and inf (as ``pcsr eval`` writes an undefined mean) become None."""
    if text in ("", None):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}, line {line}: column {column} holds {text!r}, not a number") from None
    return value if math.isfinite(value) else None


def curve_points(summary: Sequence[dict], settings: Sequence[str] = ("k", "all-light", "all-heavy")) -> list[Point]:
    """The PCSR points of a summary (the k sweep and both ends) as (paper GFLOPs, PSNR)."""
    return sorted((r["gflops_paper"], r["psnr"]) for r in summary if r["setting"] in settings)
