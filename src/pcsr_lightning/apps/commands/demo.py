"""pcsr demo: train a PCSR model on the photos inside scikit-image, then compare it on held-out photos
with bicubic and with the all-heavy model (every pixel through U_0), at a few k, with ``pcsr eval``'s loop,
and draw the result: per held-out photo, bicubic | PCSR | HR crops beside PCSR's class maps.

The class maps are drawn at the k values where the model sends 75%, 50% and 25% of the held-out photos'
pixels to its heavy upsampler (``inference.ksearch``): where a short training's heavy share falls is its
own, often all or nothing between k = 0 and 1. With ``--official``, the released models' maps (at their own
k for a half-heavy share) are drawn beside the demo's."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pcsr_lightning.apps.commands.common import K_VALUE, format_table
from pcsr_lightning.apps.train_app import run_job
from pcsr_lightning.config import compose_config, config_names
from pcsr_lightning.data.datamodule import check_scale, stage_scale
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate, rows_to_csv, summarize
from pcsr_lightning.evaluation.figure import FigureRow, comparison_figure, crop, detail_window, save_figure
from pcsr_lightning.evaluation.protocol import bicubic_sr, load_pair
from pcsr_lightning.inference.ksearch import DEFAULT_TARGETS, KChoice, ks_for_shares, prepare_all
from pcsr_lightning.inference.srmodel import SRModel, load
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, class_overlay, list_images, write_png
from pcsr_lightning.io.manifest import Manifest
from pcsr_lightning.io.official import import_official
from pcsr_lightning.io.weights import FOLDER_CONFIG, run_checkpoint
from pcsr_lightning.measure.metrics import psnr, shave_for

CROP = 192  # HR pixels per side of each panel


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


def finished_run(run: Path, experiment: str) -> Path:
    """The final checkpoint of a finished run of ``experiment``."""
    manifest = Manifest.load(run)
    if manifest.experiment != experiment:
        raise ValueError(f"--from-run {run} trained {manifest.experiment}; pass --experiment {manifest.experiment}")
    return run_checkpoint(run)


def photo_pairs(folder: Path, scale: int) -> list[tuple[Path, torch.Tensor, torch.Tensor]]:
    """(path, HR, LR) of each held-out photo."""
    return [(path, *load_pair(path, scale, None, None, DEFAULT_MAX_PIXELS)) for path in list_images(folder)]


def choose_ks(model: SRModel, pairs, scale: int, targets=DEFAULT_TARGETS) -> list[KChoice]:
    """The k values where the model's pooled heavy share on the photos is nearest each target."""
    return ks_for_shares(model.network, prepare_all(model.network, [lr[None] for _, _, lr in pairs], scale), targets)


def official_models(folder: Path, out: Path) -> dict[str, SRModel]:
    """The PCSR models in ``folder``: release .pth files imported into ``out`` (model folders with their card),
    project model files and folders loaded as they are; original networks left out (they do not route)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--official {folder}: folder not found")
    models = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".pth":
            path = import_official(path, out / path.stem)
        elif not (path.suffix in (".ckpt", ".safetensors") or (path / FOLDER_CONFIG).is_file()):
            continue
        model = load(path, device="cpu")
        if model.is_pcsr and model.num_classes > 1:
            models[path.stem] = model
    if not models:
        raise ValueError(f"--official {folder}: no PCSR model with a classifier in it (release .pth files such as "
                         "carn-pcsr-phase1.pth, or .ckpt/.safetensors/model folders)")
    return models


def figure_rows(model: SRModel, pairs, scale: int, chosen: list[KChoice],
                official: dict[str, tuple[SRModel, KChoice]]) -> list[FigureRow]:
    """One row per held-out photo: the most detailed window of bicubic, PCSR at the middle k, HR, the
    class map at each chosen k and each released model's map."""
    middle = chosen[len(chosen) // 2]
    rows = []
    for path, hr, lr in pairs:
        results = {c.k: model.upscale(lr, scale=scale, k=c.k) for c in chosen}
        result = results[middle.k]
        bicubic = bicubic_sr(hr, lr)
        window = detail_window(hr, CROP)
        shave = shave_for(scale)
        title = (f"{path.stem}: bicubic {psnr(bicubic, hr, shave):.2f} dB, PCSR {psnr(result.image, hr, shave):.2f} "
                 f"dB at k={middle.k:g} ({100 * result.heavy_share:.0f}% of its pixels heavy)")
        panels = [bicubic, result.image, hr]
        labels = ["bicubic", f"PCSR, k={middle.k:g}", "HR"]
        for c in chosen:
            r = results[c.k]
            panels.append(class_overlay(r.image, r.classes, model.num_classes))
            labels.append(f"k={c.k:g}: {100 * r.heavy_share:.0f}% heavy")
        for name, (other, c) in official.items():
            r = other.upscale(lr, scale=scale, k=c.k)
            panels.append(class_overlay(r.image, r.classes, other.num_classes))
            labels.append(f"{name} k={c.k:g}: {100 * r.heavy_share:.0f}%")
        rows.append(FigureRow(title, [crop(x, window) for x in panels], labels))
    return rows


def caption(chosen: list[KChoice], official: dict[str, tuple[SRModel, KChoice]]) -> list[str]:
    shares = ", ".join(f"k={c.k:g} ({100 * c.heavy_share:.0f}%)" for c in chosen)
    lines = [f"Class maps (red: heavy upsampler) at the k where the trained model sends these shares of the "
             f"held-out pixels to it: {shares}."]
    if official:
        lines.append("Released models, each at its own k for a half-heavy share: " + ", ".join(
            f"{name} k={c.k:g} ({100 * c.heavy_share:.0f}%)" for name, (_, c) in official.items()) + ".")
    return lines


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
    folder = held_out_folder(instantiate(cfg.data.val), out / "held_out")
    model = load(ckpt, device="cpu")
    pairs = photo_pairs(folder, scale)
    chosen = choose_ks(model, pairs, scale)
    print("k for the picture (heavy share of the held-out pixels): "
          + ", ".join(f"k={c.k:g} -> {c.heavy_share:.3f}" for c in chosen))
    official_ks = {name: (m, choose_ks(m, pairs, scale, (0.5,))[0]) for name, m in official.items()}
    ks = args.k if args.k is not None else [c.k for c in chosen]
    rows = compare(ckpt, folder, scale, ks)
    header = ["method", "psnr", "heavy_share", "gflops_paper"]
    when = "" if args.from_run else f"trained in {trained / 60:.1f} min; "
    print(f"\n{when}x{scale} PSNR (dB) on the held-out photos {', '.join(names) or cfg.data.val}:")
    print(format_table(header, [[r[h] for h in header] for r in rows]))
    write_text(rows_to_csv(header, rows), out / "demo.csv")
    picture = save_figure(comparison_figure(figure_rows(model, pairs, scale, chosen, official_ks),
                                            caption(chosen, official_ks)), out / "demo.png")
    print(f"\ncheckpoint: {ckpt}\nmanifest:   {(args.from_run or out).resolve() / 'manifest.json'}\n"
          f"table:      {out / 'demo.csv'}\npicture:    {picture}")
    print(f"demo done in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
