"""pcsr eval: PSNR and GFLOPs (both conventions) over a test folder, with k sweeps in one process."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from pcsr_lightning.apps.commands.common import add_metrics_flag, add_routing_flags, format_table
from pcsr_lightning.apps.progress import Progress
from pcsr_lightning.evaluation.evaluate import (
    RECORD_COLUMNS,
    SUMMARY_COLUMNS,
    EvalSettings,
    evaluate,
    format_value,
    record_dicts,
    summarize,
    with_metrics,
    write_outputs,
)
from pcsr_lightning.evaluation.wandb_log import eval_identity, log_evaluation
from pcsr_lightning.io.files import check_outputs
from pcsr_lightning.io.images import list_images
from pcsr_lightning.io.weights import model_reads
from pcsr_lightning.tracking import wandb_run


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR and GFLOPs over a folder of HR images (LR by MATLAB-style bicubic)")
    p.add_argument("--ckpt", required=True, help="the model: a .ckpt, a .safetensors, a model folder or a training run")
    p.add_argument("--hr-dir", required=True, help="test set: a folder of HR images (Test2K/4K/8K, Urban100 ...)")
    p.add_argument("--lr-dir", default=None, help="paired LR images (same stem, or stem + 'x4'); default: bicubic")
    p.add_argument("--original-ckpt", default=None, help="the original network: its PSNR/GFLOPs and the shares")
    p.add_argument("--crop", choices=["paper", "none"], default="none", help="paper: LR top-left cropped to 28n+4")
    add_routing_flags(p, several_k=True)
    p.add_argument("--ends", action="store_true", help="also all-light and all-heavy routing (implied by --plot)")
    p.add_argument("--bicubic", action="store_true",
                   help="also the bicubic baseline (PSNR of the LR upscaled by bicubic)")
    p.add_argument("--out", default=None, help="per-image CSV")
    p.add_argument("--summary", default=None, help="summary CSV (means per setting)")
    p.add_argument("--plot", default=None, help="PNG: PSNR vs GFLOPs (k curve, original, all-light/heavy)")
    add_metrics_flag(p)
    p.add_argument("--wandb", action="store_true",
                   help="log a wandb run (job type eval): per-image and summary tables, the k curve, the plot")
    p.set_defaults(run=run)


class NothingMeasured(ValueError):
    """Every image was skipped: the command fails as a whole (exit code 2) and writes nothing."""


def settings_from(args: argparse.Namespace) -> EvalSettings:
    return EvalSettings(
        ckpt=args.ckpt, hr_dir=args.hr_dir, lr_dir=args.lr_dir, original_ckpt=args.original_ckpt, scale=args.scale,
        ks=list(args.k), adaptive=args.adaptive, refine=not args.no_refine,
        crop=None if args.crop == "none" else args.crop, ends=args.ends or bool(args.plot), device=args.device,
        bicubic=args.bicubic, max_pixels=args.max_pixels, metrics=list(args.metrics),
        memory_format=args.memory_format, skip_flat=list(args.skip_flat), skip_tile=args.skip_tile,
        skip_halo=args.skip_halo, skip_gate=args.skip_gate, skip_fill=args.skip_fill,
        skip_budget=args.skip_budget,
    )


def run_settings(settings: EvalSettings, out=None, summary_out=None, plot=None, run=None) -> int:
    """Shared by ``pcsr eval`` and the Hydra app ``pcsr-eval``; ``run``: a wandb run to log into."""

    images = list_images(settings.hr_dir, on_skip=None)
    inputs = [*model_reads(settings.ckpt), *model_reads(settings.original_ckpt), Path(settings.hr_dir), *images]
    if settings.lr_dir and Path(settings.lr_dir).is_dir():
        inputs += [Path(settings.lr_dir), *list_images(settings.lr_dir, on_skip=None)]
    check_outputs([p for p in (out, summary_out, plot) if p], inputs)  # before any work
    with Progress(len(images), "eval") as progress:
        records, failures = evaluate(settings, log=lambda msg: progress.echo(msg, sys.stderr),
                                     on_image=lambda done, total, name: progress.advance())
    if not records:  # a header-only CSV must not replace an earlier, complete one
        kept = [str(p) for p in (out, summary_out, plot) if p and Path(p).exists()]
        raise NothingMeasured(f"no image in {settings.hr_dir} could be measured ({failures} skipped, named above); "
                              "nothing written" + (f", {', '.join(kept)} kept as they were" if kept else ""))
    summary = summarize(records)
    columns = with_metrics(SUMMARY_COLUMNS, settings.metrics)
    print(format_table(columns, [[format_value(r[h]) for h in columns] for r in summary]))
    written = write_outputs(records, summary, out, summary_out, plot, title=f"{settings.hr_dir} x{settings.scale:g}",
                            metrics=settings.metrics)
    for path in written:
        print(f"wrote {path}")
    if run is not None:

        log_evaluation(run, record_dicts(records), with_metrics(RECORD_COLUMNS, settings.metrics), summary, columns,
                       plot if plot and Path(plot).is_file() else None)
    if failures:
        print(f"{failures} image(s) could not be processed", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not args.wandb:
        return run_settings(settings, args.out, args.summary, args.plot)

    experiment, tags = eval_identity(settings.ckpt)
    name = f"{experiment} k={','.join(f'{k:g}' for k in settings.ks)}"
    folder = Path(args.out or args.summary or args.plot or "eval.csv").resolve().parent
    with wandb_run(name, f"eval {experiment}", "eval", tags, asdict(settings), folder) as tracker:
        return run_settings(settings, args.out, args.summary, args.plot, tracker)
