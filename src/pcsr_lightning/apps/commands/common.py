"""Flags shared by several subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pcsr_lightning.inference.layout import CHOICES as MEMORY_FORMAT_CHOICES
from pcsr_lightning.inference.router import check_k
from pcsr_lightning.inference.spec import (
    BUDGET_CANDIDATES,
    FILLS,
    SCORERS,
    GateSpec,
    RoutingSpec,
    check_budget,
    check_fill,
    check_gate_tile,
    check_halo,
    check_scorer,
    check_threshold,
    check_tile,
)
from pcsr_lightning.inference.srmodel import check_scale_value
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, HARD_MAX_PIXELS, IMAGE_EXTENSIONS, list_images
from pcsr_lightning.measure.metrics import METRICS


def checked(check):
    """An argparse ``type`` from a checker that raises ValueError: the message becomes the usage error
    (exit code 2) before any work starts."""

    def parse(text: str):
        try:
            return check(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("scale ")) from None

    parse.__name__ = check.__name__
    return parse


def pixel_limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= HARD_MAX_PIXELS:
        raise ValueError(f"the pixel limit must be between 1 and {HARD_MAX_PIXELS:,} (Pillow's own), got {value:,}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {text}")
    return value


def halo_value(text: str) -> int | None:
    """LR pixels, or 'rf' for the backbone's receptive radius (exact features)."""
    return None if text == "rf" else check_halo(text)


K_VALUE, SCALE_VALUE, PIXEL_LIMIT = checked(check_k), checked(check_scale_value), checked(pixel_limit)
SKIP_THRESHOLD, SKIP_TILE, HALO, TILE = checked(check_threshold), checked(check_gate_tile), checked(halo_value), \
    checked(check_tile)
SCORER, FILL, POSITIVE_INT = checked(check_scorer), checked(check_fill), checked(positive_int)
SKIP_BUDGET = checked(check_budget)


def add_image_flags(parser: argparse.ArgumentParser) -> None:
    """--max-pixels: larger images (and decompression bombs) are reported by name and skipped."""
    parser.add_argument("--max-pixels", type=PIXEL_LIMIT, default=DEFAULT_MAX_PIXELS,
                        help="skip images with more pixels than this, read from the header "
                             f"(default {DEFAULT_MAX_PIXELS:,})")


def add_memory_format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-format", choices=MEMORY_FORMAT_CHOICES, default="auto",
        help="layout of the convolutions, the same for every model compared (auto: the fastest for the device)",
    )


def add_routing_flags(parser: argparse.ArgumentParser, several_k: bool = False) -> None:
    """``several_k``: --k takes a list (a sweep in one process) instead of one value."""
    parser.add_argument("--scale", type=SCALE_VALUE, default=4.0, help="upscaling factor (> 1; any value for PCSR)")
    if several_k:
        parser.add_argument("--k", type=K_VALUE, nargs="+", default=[0.0], help="cost knob(s); several = a k sweep")
    else:
        parser.add_argument("--k", type=K_VALUE, default=0.0,
                            help="cost knob: larger k sends more pixels to light upsamplers")
    parser.add_argument("--adaptive", action="store_true", help="adaptive decision making (k-means), k unused")
    parser.add_argument("--no-refine", action="store_true", help="skip the pixel-wise refinement")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    add_image_flags(parser)
    parser.add_argument(
        "--tile", type=TILE, default=RoutingSpec.tile,
        help="run the PCSR backbone on LR tiles of this size (huge images; 0 = whole)"
    )
    add_skip_flags(parser, several=several_k)
    add_memory_format_flag(parser)


def add_skip_flags(parser: argparse.ArgumentParser, several: bool = False, several_halos: bool = False) -> None:
    """The flat-tile gate: --skip-budget (the dB it may lose against PCSR, the recommended form), --skip-flat
    (one threshold, or several beside a k sweep; with a budget: the candidates' bound), its tile and halo
    (several halos: a variant each, for timing them side by side)."""
    parser.add_argument("--skip-budget", type=SKIP_BUDGET, default=None, metavar="DB",
                        help="the PSNR loss in dB against PCSR the flat-tile gate may spend on each image (e.g. "
                             "0.05): it samples tiles, runs PCSR on them and skips as many flat tiles as its "
                             "estimate allows; --skip-flat then bounds the candidates (default "
                             f"{BUDGET_CANDIDATES:g}); 0 = none skipped")
    if several:
        parser.add_argument("--skip-flat", type=SKIP_THRESHOLD, nargs="+", default=[], metavar="THRESHOLD",
                            help="flat-tile gate thresholds: rows per (k, threshold) beside the plain k sweep")
    else:
        parser.add_argument("--skip-flat", type=SKIP_THRESHOLD, default=None, metavar="THRESHOLD",
                            help="skip LR tiles whose max |Laplacian| is below this (the fill there; 0 = none); "
                                 "research: its loss in dB is unbounded and differs per image, see --skip-budget")
    parser.add_argument("--skip-tile", type=SKIP_TILE, default=GateSpec.tile,
                        help=f"LR tile size of the flat-tile gate (default {GateSpec.tile})")
    parser.add_argument("--skip-halo", type=HALO, default=[None] if several_halos else None,
                        nargs="+" if several_halos else None,
                        help="backbone halo (LR pixels) around the gate's active tiles; 'rf' (default): the "
                             "receptive radius, exact features")
    parser.add_argument("--gate", dest="skip_gate", type=SCORER, metavar="{" + ",".join(SCORERS) + "}",
                        default=GateSpec.scorer,
                        help="what scores the tiles for --skip-flat: laplacian (default, max |Laplacian|) or "
                             "learned (the model's trained gate: its predicted PCSR residual over bicubic)")
    parser.add_argument("--skip-fill", dest="skip_fill", type=FILL, metavar="{" + ",".join(FILLS) + "}",
                        default=GateSpec.fill,
                        help="what fills the tiles --skip-flat skips: bicubic (default) or linear (the model's "
                             "fitted 5x5 fill, written by `pcsr fit-fill`; loses less, so a higher threshold fits)")


def add_metrics_flag(parser: argparse.ArgumentParser) -> None:

    parser.add_argument("--metrics", nargs="+", choices=list(METRICS), default=["psnr"],
                        help="psnr (RGB) is always measured; psnr_y: PSNR on the BT.601 luma; ssim: SSIM on the luma")


def warn_skipped(path: Path, reason: str) -> None:
    print(f"warning: skipping {path}: {reason}", file=sys.stderr)


def inputs_of(path: Path, purpose: str) -> list[Path]:
    """The images a command reads: the file, or the folder's images (entries that are no readable file are
    named, one warning line each); a folder without any is an error naming it (``purpose``: e.g. "to
    upscale")."""
    if path.is_dir():
        images = list_images(path, on_skip=warn_skipped)
        if not images:
            raise FileNotFoundError(f"no images {purpose} in {path} (image files: {', '.join(IMAGE_EXTENSIONS)})")
        return images
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"input not found: {path}")


def routing_from(args: argparse.Namespace) -> RoutingSpec:
    """The routing spec of one-value flags (``add_routing_flags``), checked as they were parsed."""
    return RoutingSpec.build(k=args.k, adaptive=args.adaptive, refine=not args.no_refine, tile=args.tile,
                             skip_flat=args.skip_flat, skip_tile=args.skip_tile, skip_halo=args.skip_halo,
                             skip_gate=args.skip_gate, skip_fill=args.skip_fill, skip_budget=args.skip_budget)


def is_out_of_memory(err: BaseException) -> bool:
    """Python's MemoryError, CUDA's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    text = str(err)
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower()))


class OutOfMemory(ValueError):
    """Memory ran out; the message says where and how to need less (exit code 2, not a traceback)."""


def out_of_memory(err: BaseException, where: str = "") -> OutOfMemory:
    text = str(err).strip()
    detail = text.splitlines()[0] if text else type(err).__name__
    return OutOfMemory(f"{where + ': ' if where else ''}out of memory ({detail}); run the backbone on LR tiles "
                       "with --tile 256 (or smaller), or use a smaller image")


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


# The dtype names of the command line, as PyTorch users write them, and the SRModel's names for them.
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def add_dtype_flag(parser: argparse.ArgumentParser, dest: str = "dtype", help: str | None = None,
                   aliases: tuple[str, ...] = ()) -> None:
    """--dtype fp32|bf16|fp16: the dtype the network runs in (``aliases``: older names of the option)."""
    parser.add_argument("--dtype", *aliases, dest=dest, choices=list(DTYPE_NAMES), default="fp32",
                        help=help or "the dtype the network runs in (default fp32; bf16 and fp16 are faster on "
                                     "GPUs, fp16 is many times slower than fp32 on CPUs)")


def warn_slow_dtype(dtype: str, device: str) -> None:
    """One warning line for fp16 on a CPU: without half-precision kernels it runs many times slower than fp32."""
    if dtype == "fp16" and not str(device).startswith("cuda"):
        print(f"warning: fp16 on {device} runs many times slower than fp32 (CPUs have no fast float16 "
              "convolutions); use --dtype bf16 or fp32 there", file=sys.stderr)
