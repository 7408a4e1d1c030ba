"""pcsr demo: train a PCSR model on the photos inside scikit-image, then compare it on held-out photos
with bicubic and with the all-heavy model (every pixel through U_0), at a few k, with ``pcsr eval``'s loop,
and draw the result: per held-out photo, bicubic | PCSR | HR crops beside PCSR's class map."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from hydra.utils import instantiate

from pcsr_lightning.apps.commands.common import K_VALUE, format_table
from pcsr_lightning.apps.train_app import run_job
from pcsr_lightning.config import compose_config, config_names
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate, rows_to_csv, summarize
from pcsr_lightning.evaluation.figure import FigureRow, comparison_figure, crop, detail_window, save_figure
from pcsr_lightning.evaluation.protocol import bicubic_sr, load_pair
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, class_overlay, list_images, write_png
from pcsr_lightning.measure.metrics import psnr, shave_for

CROP = 192  # HR pixels per side of each panel


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train the quick profile of a PCSR model on the embedded photos and compare")
    p.add_argument("--experiment", default="fsrcnn_pcsr", help="a PCSR experiment (fsrcnn_pcsr, carn_pcsr, ...)")
    p.add_argument("--profile", default="demo", help="training profile (demo, quick, smoke, table, ...)")
    p.add_argument("--k", type=K_VALUE, nargs="+", default=[0.0, 1.0, 2.0], help="routing k values to report")
    p.add_argument("--out", default=None, help="run folder (default outputs/demo/<experiment>/<time>)")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. profile.steps.stage0=100")
    p.set_defaults(run=run)


def held_out_folder(source, folder: Path) -> Path:
    """The held-out images of the training data as PNG files, so ``pcsr eval``'s loop measures them."""

    for i in range(len(source)):
        write_png(source.load(i), folder / f"{Path(source.name(i)).stem}.png")
    return folder


def compare(ckpt: str | Path, folder: Path, scale: int, ks: list[float]) -> list[dict]:
    """Mean PSNR over the folder's images of bicubic, all-heavy and routed PCSR at each k (``evaluate``)."""
    records, failures = evaluate(EvalSettings(str(ckpt), str(folder), scale=scale, ks=ks, ends=True, bicubic=True),
                                 log=lambda m: print(m, file=sys.stderr))
    if failures:
        raise ValueError(f"{failures} held-out image(s) in {folder} could not be read")
    methods = {("bicubic", None): "bicubic", ("all-heavy", None): "PCSR, all heavy (U_0)",
               **{("k", float(k)): f"PCSR routed, k={k:g}" for k in ks}}
    by_key = {(r["setting"], r["k"]): r for r in summarize(records)}
    return [{"method": name, "psnr": f"{by_key[key]['psnr']:.2f}", "gflops_paper": f"{by_key[key]['gflops_paper']:.2f}",
             "heavy_share": "" if by_key[key]["heavy_share"] is None else f"{by_key[key]['heavy_share']:.3f}"}
            for key, name in methods.items()]


def figure_rows(ckpt: str | Path, folder: Path, scale: int, k: float) -> list[FigureRow]:
    """One row per held-out photo: the most detailed window of bicubic, PCSR at ``k``, HR and the class map."""
    model = load(ckpt, device="cpu")
    rows = []
    for path in list_images(folder):
        hr, lr = load_pair(path, scale, None, None, DEFAULT_MAX_PIXELS)
        result = model.upscale(lr, scale=scale, k=k)
        bicubic = bicubic_sr(hr, lr)
        window = detail_window(hr, CROP)
        shave = shave_for(scale)
        title = (f"{path.stem}: bicubic {psnr(bicubic, hr, shave):.2f} dB, PCSR {psnr(result.image, hr, shave):.2f} "
                 f"dB at k={k:g}, {100 * result.heavy_share:.0f}% of pixels heavy")
        overlay = class_overlay(result.image, result.classes, model.num_classes)
        rows.append(FigureRow(title, [crop(x, window) for x in (bicubic, result.image, hr, overlay)],
                              ["bicubic", "PCSR", "HR", "class map (red: heavy)"]))
    return rows


def run(args: argparse.Namespace) -> int:
    for flag, group, value in (("--experiment", "experiment", args.experiment), ("--profile", "profile", args.profile)):
        if value not in config_names(group):
            raise ValueError(f"{flag} {value!r} is not one of the {group} configs: {', '.join(config_names(group))}")
    out = Path(args.out or f"outputs/demo/{args.experiment}/{datetime.now():%Y-%m-%d_%H-%M-%S}")
    cfg = compose_config([f"experiment={args.experiment}", f"profile={args.profile}", *args.overrides], out)
    if cfg.model.kind != "pcsr":
        raise ValueError(f"pcsr demo trains a PCSR model; {args.experiment} is {cfg.model.kind}")
    names = list(cfg.data.val.names) if "names" in cfg.data.val else []
    print(f"pcsr demo: training {cfg.name} ({args.profile} profile) into {out}", flush=True)
    start = time.perf_counter()
    manifest = run_job(cfg)
    trained = time.perf_counter() - start
    folder = held_out_folder(instantiate(cfg.data.val), out / "held_out")
    rows = compare(manifest.final_checkpoint, folder, int(cfg.data.scale), args.k)
    header = ["method", "psnr", "heavy_share", "gflops_paper"]
    print(f"\ntrained in {trained / 60:.1f} min; x{int(cfg.data.scale)} PSNR (dB) on the held-out photos "
          f"{', '.join(names) or cfg.data.val}:")
    print(format_table(header, [[r[h] for h in header] for r in rows]))
    write_text(rows_to_csv(header, rows), out / "demo.csv")
    picture = save_figure(comparison_figure(figure_rows(manifest.final_checkpoint, folder, int(cfg.data.scale),
                                                        args.k[0])), out / "demo.png")
    print(f"\ncheckpoint: {manifest.final_checkpoint}\nmanifest:   {out.resolve() / 'manifest.json'}\n"
          f"table:      {out / 'demo.csv'}\npicture:    {picture}")
    print(f"demo done in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
