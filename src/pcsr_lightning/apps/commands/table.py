"""pcsr table: the paper's Table 1 layout (PSNR / GFLOPs / % of the original per dataset), ours beside the paper's."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pcsr_lightning.apps.commands.common import K_VALUE, add_image_flags, add_metrics_flag
from pcsr_lightning.io.checkpoint import describe_checkpoint
from pcsr_lightning.io.files import check_writable_dir, write_text
from pcsr_lightning.evaluation.evaluate import EXTRA_METRICS, EvalSettings, evaluate, rows_to_csv, summarize

ROWS = ("FSRCNN", "FSRCNN-PCSR", "CARN", "CARN-PCSR", "SRResNet", "SRResNet-PCSR")
BACKBONE_ROW = {"fsrcnn": "FSRCNN", "carn": "CARN", "srresnet": "SRResNet"}
# Spec section 5: (PSNR dB, GFLOPs per image, % of the original) at x4, paper convention.
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


def read_manifest(path: Path) -> tuple[str, Path]:
    """(row name, final checkpoint) of a training run's manifest.json (issue 4's contract)."""
    try:
        manifest = json.loads(path.read_text())
        backbone, kind, final = manifest["backbone"], manifest["kind"], manifest["final_checkpoint"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a training manifest (needs backbone, kind, final_checkpoint): {err}") from err
    if backbone not in BACKBONE_ROW or kind not in ("original", "pcsr"):
        raise ValueError(f"{path}: unknown backbone/kind {backbone!r}/{kind!r}")
    running = [s.get("name") for s in manifest.get("stages", []) if s.get("status") != "done"]
    if running:
        raise ValueError(f"{path}: stages {running} are not done; the run has not finished")
    ckpt = Path(final)
    if not ckpt.is_file():
        raise ValueError(f"{path}: final_checkpoint {ckpt} does not exist")
    return BACKBONE_ROW[backbone] + ("-PCSR" if kind == "pcsr" else ""), ckpt


def resolve_row(spec: str) -> tuple[str, Path]:
    """NAME=PATH with PATH a .ckpt, a manifest.json or a run folder holding one."""
    name, sep, path = spec.partition("=")
    if not sep or name not in ROWS:
        raise ValueError(f"--row {spec!r}: expected NAME=PATH with NAME one of {list(ROWS)}")
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
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
    found: dict[str, Path] = {}
    for manifest in sorted(folder.rglob("manifest.json")):
        name, ckpt = read_manifest(manifest)
        if name in found:
            raise ValueError(f"two runs for {name} under {folder}: {found[name]} and {ckpt}; pass --row {name}=...")
        found[name] = check_row(name, ckpt)
    return found


def pick_k(summary: list[dict], target: float | None) -> dict:
    """The k row: the cheapest whose PSNR reaches ``target`` (else the best PSNR); the only one when fixed."""
    ks = [r for r in summary if r["setting"] == "k"]
    if target is None or len(ks) == 1:
        return ks[0]
    good = [r for r in ks if r["psnr"] >= target]
    return min(good, key=lambda r: r["gflops_paper"]) if good else max(ks, key=lambda r: r["psnr"])


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="the paper's Table 1 from checkpoints or training runs")
    p.add_argument("--row", action="append", default=[], help="NAME=CKPT|manifest.json|run folder (repeat)")
    p.add_argument("--runs", default=None, help="folder of training runs: every manifest.json below it")
    p.add_argument("--dataset", action="append", default=[], help="NAME=HR_DIR (repeat); default: sample photos")
    p.add_argument("--k", type=K_VALUE, nargs="+", default=[-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0],
                   help="k values swept per PCSR cell (one value = fixed k)")
    p.add_argument("--psnr-tolerance", type=float, default=0.05,
                   help="pick the cheapest k with PSNR >= original - tolerance (needs the original row)")
    p.add_argument("--crop", choices=["paper", "none"], default="paper")
    p.add_argument("--out-dir", default="results/table")
    p.add_argument("--device", default="cpu")
    add_metrics_flag(p)
    p.add_argument("--wandb", action="store_true", help="log the table and the curves to a wandb run (job type eval)")
    add_image_flags(p)
    p.set_defaults(run=run)


def fmt(value, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    rows = rows_from_runs(Path(args.runs)) if args.runs else {}
    rows.update(dict(resolve_row(spec) for spec in args.row))
    if not rows:
        raise ValueError("no checkpoints: give --row NAME=CKPT (or a manifest) or --runs DIR with training runs")
    out = check_writable_dir(args.out_dir)  # before any work
    datasets = {}
    for spec in args.dataset:
        name, sep, folder = spec.partition("=")
        if not sep:
            raise ValueError(f"--dataset {spec!r}: expected NAME=HR_DIR")
        datasets[name] = folder
    if not datasets:
        from pcsr_lightning.data.samples import materialize_samples

        datasets["samples"] = str(materialize_samples(out.parent / "samples"))
    from pcsr_lightning.evaluation.evaluate import curve_series
    from pcsr_lightning.evaluation.plot import save_plot

    cells, images = [], {}
    for dataset, folder in datasets.items():
        series = []
        for name in [r for r in ROWS if r in rows]:
            original = name.removesuffix("-PCSR")
            settings = EvalSettings(str(rows[name]), folder, original_ckpt=str(rows[original]) if
                                    name.endswith("-PCSR") and original in rows else None,
                                    ks=args.k, crop=None if args.crop == "none" else args.crop, ends=True,
                                    device=args.device, max_pixels=args.max_pixels, metrics=list(args.metrics))
            print(f"{dataset}: {name} ...", file=sys.stderr)
            records, failures = evaluate(settings, log=lambda m: print(m, file=sys.stderr))
            if failures:
                raise ValueError(f"{failures} image(s) of {folder} could not be read")
            summary = summarize(records)
            ref = next((r for r in summary if r["model"] == "original"), None)
            if name.endswith("-PCSR"):
                chosen = pick_k(summary, None if ref is None or len(args.k) == 1 else ref["psnr"] - args.psnr_tolerance)
                series += curve_series(summary, name, original)
            else:
                chosen = ref
            paper = PAPER[name].get(dataset, (None, None, None))
            cells.append({"row": name, "dataset": dataset, "k": chosen["k"], "psnr": chosen["psnr"],
                          **{m: chosen[m] for m in EXTRA_METRICS if m in args.metrics},
                          "gflops_paper": chosen["gflops_paper"], "gflops_fvcore": chosen["gflops_fvcore"],
                          "pct_paper": chosen["pct_paper"], "pct_fvcore": chosen["pct_fvcore"], "paper_psnr": paper[0],
                          "paper_gflops": paper[1], "paper_pct": paper[2], "checkpoint": str(rows[name])})
        if series:
            images[dataset] = save_plot(series, out / f"curve_{dataset}.png", f"{dataset} x4: PSNR vs GFLOPs")
    names = list(datasets)
    extra = [m for m in EXTRA_METRICS if m in args.metrics]
    labels = {"psnr_y": "PSNR-Y", "ssim": "SSIM"}
    header = ["model"] + [f"{d} {c}" for d in names
                          for c in ("k", "PSNR", *[labels[m] for m in extra], "GFLOPs", "%", "paper")]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in [r for r in ROWS if r in rows]:
        line = [name]
        for d in names:
            c = next(c for c in cells if c["row"] == name and c["dataset"] == d)
            paper = "" if c["paper_psnr"] is None else f"{c['paper_psnr']:.2f} / {c['paper_gflops']:.1f}" + (
                f" ({c['paper_pct']}%)" if c["paper_pct"] else "")
            line += [fmt(c["k"], 2), fmt(c["psnr"], 2), *[fmt(c[m], 4 if m == "ssim" else 2) for m in extra],
                     fmt(c["gflops_paper"], 2), fmt(c["pct_paper"], 0), paper]
        lines.append("| " + " | ".join(line) + " |")
    markdown = "\n".join(lines) + "\n\nGFLOPs per image, paper convention (spec section 4); fvcore MACs in table.csv.\n"
    print(markdown)
    write_text(markdown, out / "table.md")
    columns = TABLE_COLUMNS[:4] + extra + TABLE_COLUMNS[4:]
    write_text(rows_to_csv(columns, cells), out / "table.csv")
    print(f"wrote {out / 'table.md'}, {out / 'table.csv'} and {len(images)} curve(s)")
    if args.wandb:
        from pcsr_lightning.evaluation.wandb_log import log_results
        from pcsr_lightning.tracking import wandb_run

        config = {k: v for k, v in vars(args).items() if k != "run"}
        with wandb_run("table " + " ".join(names), "table", "eval", sorted(rows), config, out) as run:
            log_results(run, "table", columns, cells, {f"curve_{d}": str(p) for d, p in images.items()})
    return 0
