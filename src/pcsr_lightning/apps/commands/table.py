"""pcsr table: the paper's Table 1 layout (PSNR / GFLOPs / % of the original per dataset), ours beside the paper's.

The table itself is built in ``evaluation.paper_table``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from pcsr_lightning.apps.commands.common import K_VALUE, add_image_flags, add_memory_format_flag, add_metrics_flag
from pcsr_lightning.apps.progress import Progress
from pcsr_lightning.data.samples import materialize_samples
from pcsr_lightning.evaluation.evaluate import rows_to_csv
from pcsr_lightning.evaluation.paper_table import (
    ROWS,
    build_table,
    resolve_row,
    rows_from_runs,
    table_columns,
    table_markdown,
)
from pcsr_lightning.evaluation.wandb_log import log_results
from pcsr_lightning.io.files import check_not_within, check_outputs, check_writable_dir, write_text
from pcsr_lightning.io.images import list_images
from pcsr_lightning.io.weights import model_reads
from pcsr_lightning.tracking import wandb_run


def add_parser(sub) -> None:
    p = sub.add_parser("table", help="the paper's Table 1 from checkpoints or training runs")
    p.add_argument("--row", action="append", default=[], help="NAME=CKPT|manifest.json|run folder (repeat)")
    p.add_argument("--runs", default=None, help="folder of training runs: every manifest.json below it")
    p.add_argument("--dataset", action="append", default=[], help="NAME=HR_DIR (repeat); default: sample photos")
    p.add_argument("--k", type=K_VALUE, nargs="+", default=[-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0],
                   help="k values swept per PCSR cell (one value = fixed k)")
    p.add_argument("--psnr-tolerance", type=float, default=0.05,
                   help="pick the cheapest k with PSNR >= original - tolerance (needs the original row)")
    p.add_argument("--crop", choices=["paper", "none"], default="paper",
                   help="paper (default): the LR cropped to 28n+4 from the top left, as the paper measures; "
                        "none: whole images")
    p.add_argument("--out-dir", default="results/table",
                   help="folder for table.md, table.csv and the curves (default results/table)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    add_metrics_flag(p)
    add_memory_format_flag(p)
    p.add_argument("--wandb", action="store_true", help="log the table and the curves to a wandb run (job type eval)")
    add_image_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.psnr_tolerance) and args.psnr_tolerance >= 0):
        raise ValueError(f"--psnr-tolerance must be a finite number >= 0 (dB), got {args.psnr_tolerance}")
    if args.runs and not Path(args.runs).is_dir():
        raise FileNotFoundError(f"--runs {args.runs}: folder not found")
    rows = rows_from_runs(Path(args.runs)) if args.runs else {}
    given = [spec.partition("=")[0] for spec in args.row]
    twice = sorted({name for name in given if given.count(name) > 1})
    if twice:
        raise ValueError(f"--row {twice[0]} is given twice")
    rows.update(dict(resolve_row(spec) for spec in args.row))
    if not rows:
        raise ValueError("no checkpoints: give --row NAME=CKPT (or a manifest) or --runs DIR with training runs")
    out = check_writable_dir(args.out_dir)  # before any work
    datasets = {}
    for spec in args.dataset:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--dataset {spec!r}: expected NAME=HR_DIR")
        if name in datasets:
            raise ValueError(f"--dataset {name} is given twice")
        datasets[name] = folder
    # No output (the table, the curves) may replace an input or lie inside a folder read: a checkpoint, a
    # run folder, a dataset folder (where a curve would count as one more test image).
    outputs = [out / "table.md", out / "table.csv", *[out / f"curve_{name}.png" for name in datasets or ["samples"]]]
    models = [p for spec in args.row for p in model_reads(spec.partition("=")[2])]
    inputs = [*rows.values(), *models, *map(Path, datasets.values()),
              *[p for folder in datasets.values() for p in list_images(folder, on_skip=None)]]
    check_not_within(out, [p for p in map(Path, [*models, *datasets.values()]) if p.is_dir()], "--out-dir")
    check_outputs(outputs, inputs)
    if not datasets:
        datasets["samples"] = str(materialize_samples(out.parent / "samples"))
    evaluated = [name for name in ROWS if name in rows]  # the rows build_table evaluates, on every dataset
    total = len(evaluated) * sum(len(list_images(folder, on_skip=None)) for folder in datasets.values())
    with Progress(total, "table") as progress:
        cells, images = build_table(rows, datasets, args.k, args.psnr_tolerance,
                                    None if args.crop == "none" else args.crop, args.device, out,
                                    max_pixels=args.max_pixels, metrics=args.metrics, memory_format=args.memory_format,
                                    log=lambda msg: progress.echo(msg, sys.stderr),
                                    on_image=lambda done, n, name: progress.advance())
    markdown = table_markdown(cells, args.metrics)
    print(markdown)
    write_text(markdown, out / "table.md")
    columns = table_columns(args.metrics)
    write_text(rows_to_csv(columns, cells), out / "table.csv")
    print(f"wrote {out / 'table.md'}, {out / 'table.csv'} and {len(images)} curve(s)")
    if args.wandb:

        config = {k: v for k, v in vars(args).items() if k != "run"}
        with wandb_run("table " + " ".join(datasets), "table", "eval", sorted(rows), config, out) as run:
            log_results(run, "table", columns, cells, {f"curve_{d}": str(p) for d, p in images.items()})
    return 0
