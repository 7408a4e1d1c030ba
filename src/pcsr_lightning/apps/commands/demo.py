"""pcsr demo: train a PCSR model on the photos inside scikit-image, then compare it on held-out photos
with bicubic and with the all-heavy model (every pixel through U_0), at a few k."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path

import torch

from pcsr_lightning.io.checkpoint import load_checkpoint
from pcsr_lightning.apps.commands.common import K_VALUE, format_table
from pcsr_lightning.evaluation.protocol import bicubic_psnr, make_pair
from pcsr_lightning.evaluation.evaluate import rows_to_csv
from pcsr_lightning.io.files import write_text
from pcsr_lightning.measure.metrics import psnr, shave_for


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train the quick profile of a PCSR model on the embedded photos and compare")
    p.add_argument("--experiment", default="fsrcnn_pcsr", help="a PCSR experiment (fsrcnn_pcsr, carn_pcsr, ...)")
    p.add_argument("--profile", default="quick", help="training profile (quick, smoke, table, ...)")
    p.add_argument("--k", type=K_VALUE, nargs="+", default=[0.0, 1.0, 2.0], help="routing k values to report")
    p.add_argument("--out", default=None, help="run folder (default outputs/demo/<experiment>/<time>)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. profile.steps.stage0=100")
    p.set_defaults(run=run)


def compare(loaded, source, scale: int, ks: list[float]) -> list[dict]:
    """Mean PSNR over ``source``'s images of bicubic, all-heavy and routed PCSR at each k."""
    from pcsr_lightning.inference.routed import prepare, render, render_forced, route

    model, shave = loaded.model, shave_for(scale)
    totals: dict[str, list[float]] = {}
    shares: dict[str, list[float]] = {}

    def add(key, value, share=None):
        totals.setdefault(key, []).append(value)
        if share is not None:
            shares.setdefault(key, []).append(share)

    for i in range(len(source)):
        hr, lr = make_pair(source.load(i), scale)
        add("bicubic", bicubic_psnr(hr, lr, scale))
        lr = lr[None]
        prepared = prepare(model, lr, scale)  # backbone and classifier once per photo
        add("PCSR, all heavy (U_0)", psnr(render_forced(model, prepared, 0).sr[0], hr, shave), 1.0)
        for k in ks:
            out = render(model, prepared, route(model, prepared, k))
            add(f"PCSR routed, k={k:g}", psnr(out.sr[0], hr, shave), out.heavy_share())
    return [{"method": key, "psnr": f"{sum(v) / len(v):.2f}",
             "heavy_share": f"{sum(shares[key]) / len(shares[key]):.3f}" if key in shares else ""}
            for key, v in totals.items()]


def run(args: argparse.Namespace) -> int:
    from hydra.utils import instantiate

    from pcsr_lightning.apps.train_app import run_job
    from pcsr_lightning.config import compose_config

    out = Path(args.out or f"outputs/demo/{args.experiment}/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    cfg = compose_config([f"experiment={args.experiment}", f"profile={args.profile}", *args.overrides], out)
    if cfg.model.kind != "pcsr":
        raise ValueError(f"pcsr demo trains a PCSR model; {args.experiment} is {cfg.model.kind}")
    names = list(cfg.data.val.names) if "names" in cfg.data.val else []
    print(f"pcsr demo: training {cfg.name} ({args.profile} profile) into {out}", flush=True)
    start = time.perf_counter()
    manifest = run_job(cfg)
    trained = time.perf_counter() - start
    loaded = load_checkpoint(manifest.final_checkpoint)
    with torch.no_grad():
        rows = compare(loaded, instantiate(cfg.data.val), int(cfg.data.scale), args.k)
    header = ["method", "psnr", "heavy_share"]
    print(f"\ntrained in {trained / 60:.1f} min; x{int(cfg.data.scale)} PSNR (dB) on the held-out photos "
          f"{', '.join(names) or cfg.data.val}:")
    print(format_table(header, [[r[h] for h in header] for r in rows]))
    write_text(rows_to_csv(header, rows), out / "demo.csv")
    print(f"\ncheckpoint: {manifest.final_checkpoint}\nmanifest:   {out.resolve() / 'manifest.json'}\n"
          f"table:      {out / 'demo.csv'}")
    return 0
