"""pcsr demo: train a PCSR model on the photos inside scikit-image, then compare it on held-out photos
with bicubic and with the all-heavy model (every pixel through U_0), at a few k, and draw the result
(``evaluation.demo``, which the ``demo`` study runs too). With ``--official``, the released models' maps
are drawn beside the demo's."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from pcsr_lightning.apps.commands.common import K_VALUE, format_table
from pcsr_lightning.apps.train_app import run_job
from pcsr_lightning.config import compose_config, config_names
from pcsr_lightning.data.datamodule import check_scale, stage_scale
from pcsr_lightning.evaluation.demo import DEMO_COLUMNS, finished_run, measure_and_draw, official_models


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train the quick profile of a PCSR model on the embedded photos and compare")
    p.add_argument("--experiment", default="fsrcnn_pcsr", help="a PCSR experiment (fsrcnn_pcsr, carn_pcsr, ...)")
    p.add_argument("--profile", default="demo", help="training profile (demo, quick, smoke, table, ...)")
    p.add_argument("--k", type=K_VALUE, nargs="+", default=None,
                   help="routing k values for the table (default: the picture's, where 75%%, 50%% and 25%% of "
                        "the held-out pixels are heavy)")
    p.add_argument("--official", type=Path, default=None, metavar="DIR",
                   help="a folder of released PCSR checkpoints (.pth, imported into the run folder) or model files: "
                        "their class maps are drawn beside the demo's")
    p.add_argument("--out", default=None, help="run folder (default outputs/demo/<experiment>/<time>)")
    p.add_argument("--from-run", type=Path, default=None, metavar="RUN",
                   help="a finished demo run folder: measure and draw its model again without training (its "
                        "--experiment), writing into it unless --out")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. profile.steps.stage0=100")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for flag, group, value in (("--experiment", "experiment", args.experiment), ("--profile", "profile", args.profile)):
        if value not in config_names(group):
            raise ValueError(f"{flag} {value!r} is not one of the {group} configs: {', '.join(config_names(group))}")
    out = Path(args.out or args.from_run or f"outputs/demo/{args.experiment}/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    cfg = compose_config([f"experiment={args.experiment}", f"profile={args.profile}", *args.overrides], out)
    if cfg.model.kind != "pcsr":
        raise ValueError(f"pcsr demo trains a PCSR model; {args.experiment} is {cfg.model.kind}")
    names = list(cfg.data.val.names) if "names" in cfg.data.val else []
    start = time.perf_counter()
    official = official_models(args.official, out / "official") if args.official else {}  # before training
    if args.from_run:
        ckpt = finished_run(args.from_run, cfg.name)
        print(f"pcsr demo: {cfg.name} of {args.from_run} ({ckpt.name}), no training", flush=True)
    else:
        print(f"pcsr demo: training {cfg.name} ({args.profile} profile) into {out}", flush=True)
        ckpt = Path(run_job(cfg).final_checkpoint)
    trained = time.perf_counter() - start
    trained_on = OmegaConf.to_container(cfg.data, resolve=True)["scale"]
    scale = stage_scale(trained_on, cfg.data.get("val_scales"))
    if len(set(check_scale(trained_on))) > 1:  # one model for every scale: shown at its largest validation scale
        print(f"pcsr demo: {cfg.name} was trained on scales {trained_on}; measured and drawn at x{scale}")
    result = measure_and_draw(ckpt, instantiate(cfg.data.val), scale, out, official, args.k)
    when = "" if args.from_run else f"trained in {trained / 60:.1f} min; "
    print(f"\n{when}x{scale} PSNR (dB) on the held-out photos {', '.join(names) or cfg.data.val}:")
    print(format_table(DEMO_COLUMNS, [[r[h] for h in DEMO_COLUMNS] for r in result.rows]))
    print(f"\ncheckpoint: {ckpt}\nmanifest:   {(args.from_run or out).resolve() / 'manifest.json'}\n"
          f"table:      {result.table}\npicture:    {result.picture}")
    print(f"demo done in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
