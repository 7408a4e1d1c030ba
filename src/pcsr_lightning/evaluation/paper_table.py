"""The paper's Table 1 (PSNR / GFLOPs / % of the original per dataset, x4), ours beside the paper's numbers.

Rows come from checkpoints or finished training runs; each PCSR cell is a k sweep from which ``pick_k``
takes the cheapest k that keeps the original network's PSNR (within a tolerance).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pcsr_lightning.evaluation.evaluate import EXTRA_METRICS, EvalSettings, curve_series, evaluate, summarize
from pcsr_lightning.evaluation.plot import save_plot
from pcsr_lightning.io.checkpoint import describe_checkpoint
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS
from pcsr_lightning.io.manifest import FILENAME, Manifest
from pcsr_lightning.models.pcsr import KINDS

ROWS = ("FSRCNN", "FSRCNN-PCSR", "CARN", "CARN-PCSR", "SRResNet", "SRResNet-PCSR")
BACKBONE_ROW = {"fsrcnn": "FSRCNN", "carn": "CARN", "srresnet": "SRResNet"}
# The paper's own results: (PSNR dB, GFLOPs per image, % of the original) at x4, paper FLOPs convention.
PAPER = {
    "FSRCNN": {"Test2K": (25.69, 45.3, None), "Test4K": (26.99, 185.3, None), "Test8K": (32.82, 1067.8, None),
               "Urban100": (23.05, 19.9, None)},
    "FSRCNN-PCSR": {"Test2K": (25.61, 8.5, 19), "Test4K": (26.91, 32.6, 18), "Test8K": (32.73, 196.6, 18),
                    "Urban100": (22.89, 3.4, 17)},
    "CARN": {"Test2K": (26.03, 112.0, None), "Test4K": (27.45, 457.8, None), "Test8K": (33.29, 2638.6, None),
             "Urban100": (24.03, 49.3, None)},
    "CARN-PCSR": {"Test2K": (26.01, 64.0, 57), "Test4K": (27.42, 260.0, 58), "Test8K": (33.25, 1355.1, 51),
                  "Urban100": (24.00, 29.6, 60)},
    "SRResNet": {"Test2K": (26.24, 502.9, None), "Test4K": (27.71, 2056.2, None), "Test8K": (33.55, 11850.7, None),
                 "Urban100": (24.65, 221.3, None)},
    "SRResNet-PCSR": {"Test2K": (26.20, 245.6, 49), "Test4K": (27.66, 981.0, 48), "Test8K": (33.52, 5093.7, 43),
                      "Urban100": (24.54, 124.9, 56)},
}
TABLE_COLUMNS = ["row", "dataset", "k", "psnr", "gflops_paper", "gflops_fvcore", "pct_paper", "pct_fvcore",
                 "paper_psnr", "paper_gflops", "paper_pct", "checkpoint"]
METRIC_LABELS = {"psnr_y": "PSNR-Y", "ssim": "SSIM"}


def extra_metrics(metrics: Sequence[str]) -> list[str]:
    """The metrics asked for beside RGB PSNR, in the table's order."""
    return [m for m in EXTRA_METRICS if m in metrics]


def table_columns(metrics: Sequence[str] = ("psnr",)) -> list[str]:
    """table.csv's columns: the extra metrics right after ``psnr``."""
    return TABLE_COLUMNS[:4] + extra_metrics(metrics) + TABLE_COLUMNS[4:]


def read_manifest(path: Path) -> tuple[str, Path]:
    """(row name, final checkpoint) of a finished training run, from its manifest.json."""
    path = Path(path)
    if path.name != FILENAME:
        raise ValueError(f"{path}: a training run's record is its {FILENAME}")
    manifest = Manifest.load(path.parent)
    if manifest.backbone not in BACKBONE_ROW or manifest.kind not in KINDS:
        raise ValueError(f"{path}: unknown backbone/kind {manifest.backbone!r}/{manifest.kind!r}")
    running = [s.name for s in manifest.stages if s.status != "done"]
    if running:
        raise ValueError(f"{path}: stages {running} are not done; the run has not finished")
    if manifest.final_checkpoint is None or not Path(manifest.final_checkpoint).is_file():
        raise ValueError(f"{path}: final_checkpoint {manifest.final_checkpoint} does not exist")
    row = BACKBONE_ROW[manifest.backbone] + ("-PCSR" if manifest.kind == "pcsr" else "")
    return row, Path(manifest.final_checkpoint)


def resolve_row(spec: str) -> tuple[str, Path]:
    """NAME=PATH with PATH a .ckpt, a manifest.json or a run folder holding one."""
    name, sep, path = spec.partition("=")
    if not sep or name not in ROWS:
        raise ValueError(f"--row {spec!r}: expected NAME=PATH with NAME one of {list(ROWS)}")
    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
    if p.suffix == ".json":
        manifest_row, ckpt = read_manifest(p)
        if manifest_row != name:
            raise ValueError(f"--row {name}: {p} is a {manifest_row} run")
        return name, check_row(name, ckpt)
    if not p.is_file():
        raise ValueError(f"--row {name}: checkpoint not found: {p}")
    return name, check_row(name, p)


def check_row(name: str, ckpt: Path) -> Path:
    """The checkpoint of row ``name`` must be of its kind (original or PCSR) and backbone."""
    kind, backbone = describe_checkpoint(ckpt)
    want_kind, want_backbone = ("pcsr" if name.endswith("-PCSR") else "original"), name.removesuffix("-PCSR")
    if (kind, backbone) != (want_kind, want_backbone):
        raise ValueError(f"--row {name}: {ckpt} is a {kind} checkpoint with a {backbone} backbone, "
                         f"the row needs {want_kind} with {want_backbone}")
    return ckpt


def rows_from_runs(folder: Path) -> dict[str, Path]:
    """Every finished run below ``folder``, one per row."""
    found: dict[str, Path] = {}
    for manifest in sorted(Path(folder).rglob(FILENAME)):
        name, ckpt = read_manifest(manifest)
        if name in found:
            raise ValueError(f"two runs for {name} under {folder}: {found[name]} and {ckpt}; pass --row {name}=...")
        found[name] = check_row(name, ckpt)
    return found


def pick_k(summary: list[dict], target: float | None) -> dict:
    """The k row of a summary: the cheapest (paper GFLOPs) whose PSNR reaches ``target``, else the best PSNR;
    the only one when a single k was swept or there is no target."""
    ks = [r for r in summary if r["setting"] == "k" and r.get("skip_flat") is None]
    if not ks:
        raise ValueError("the summary has no k rows: pick_k needs a k sweep of a PCSR model")
    if target is None or len(ks) == 1:
        return ks[0]
    good = [r for r in ks if r["psnr"] >= target]
    return min(good, key=lambda r: r["gflops_paper"]) if good else max(ks, key=lambda r: r["psnr"])


def build_table(rows: dict[str, Path], datasets: dict[str, str], ks: Sequence[float], psnr_tolerance: float,
                crop: str | None, device: str, out_dir: Path, max_pixels: int = DEFAULT_MAX_PIXELS,
                metrics: Sequence[str] = ("psnr",), memory_format: str = "auto",
                log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
                on_image: Callable[[int, int, str], None] | None = None) -> tuple[list[dict], dict[str, Path]]:
    """Evaluate every row on every dataset: the cells (``TABLE_COLUMNS``) and one PSNR-vs-GFLOPs curve per dataset.
    ``on_image``: ``evaluate``'s, after each image of each row."""

    cells, images = [], {}
    for dataset, folder in datasets.items():
        series = []
        for name in [r for r in ROWS if r in rows]:
            original = name.removesuffix("-PCSR")
            settings = EvalSettings(str(rows[name]), folder, original_ckpt=str(rows[original]) if
                                    name.endswith("-PCSR") and original in rows else None,
                                    ks=ks, crop=crop, ends=True, device=device, max_pixels=max_pixels,
                                    metrics=list(metrics), memory_format=memory_format)
            log(f"{dataset}: {name} ...")
            records, failures = evaluate(settings, log=log, on_image=on_image)
            if failures:
                raise ValueError(f"{failures} image(s) of {folder} could not be read")
            summary = summarize(records)
            ref = next((r for r in summary if r["model"] == "original"), None)
            if name.endswith("-PCSR"):
                chosen = pick_k(summary, None if ref is None or len(ks) == 1 else ref["psnr"] - psnr_tolerance)
                series += curve_series(summary, name, original)
            else:
                chosen = ref
            paper = PAPER[name].get(dataset, (None, None, None))
            cells.append({"row": name, "dataset": dataset, "k": chosen["k"], "psnr": chosen["psnr"],
                          **{m: chosen[m] for m in extra_metrics(metrics)},
                          "gflops_paper": chosen["gflops_paper"], "gflops_fvcore": chosen["gflops_fvcore"],
                          "pct_paper": chosen["pct_paper"], "pct_fvcore": chosen["pct_fvcore"], "paper_psnr": paper[0],
                          "paper_gflops": paper[1], "paper_pct": paper[2], "checkpoint": str(rows[name])})
        if series:
            images[dataset] = save_plot(series, Path(out_dir) / f"curve_{dataset}.png", f"{dataset} x4: PSNR vs GFLOPs")
    return cells, images


def _fmt(value, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table_markdown(cells: list[dict], metrics: Sequence[str] = ("psnr",)) -> str:
    """The table in the paper's layout: one line per row, k / PSNR (/ extra metrics) / GFLOPs / % / the paper's
    per dataset."""
    datasets = list(dict.fromkeys(c["dataset"] for c in cells))
    extra = extra_metrics(metrics)
    header = ["model"] + [f"{d} {c}" for d in datasets
                          for c in ("k", "PSNR", *[METRIC_LABELS[m] for m in extra], "GFLOPs", "%", "paper")]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in [r for r in ROWS if any(c["row"] == r for c in cells)]:
        line = [name]
        for d in datasets:
            c = next(c for c in cells if c["row"] == name and c["dataset"] == d)
            paper = "" if c["paper_psnr"] is None else f"{c['paper_psnr']:.2f} / {c['paper_gflops']:.1f}" + (
                f" ({c['paper_pct']}%)" if c["paper_pct"] else "")
            line += [_fmt(c["k"], 2), _fmt(c["psnr"], 2), *[_fmt(c[m], 4 if m == "ssim" else 2) for m in extra],
                     _fmt(c["gflops_paper"], 2), _fmt(c["pct_paper"], 0), paper]
        lines.append("| " + " | ".join(line) + " |")
    return ("\n".join(lines) + "\n\nGFLOPs per image in the paper's convention (2 x multiply-adds, as its table "
            "counts them); fvcore MACs in table.csv.\n")
