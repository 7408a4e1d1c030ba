"""pcsr flops: per-module FLOPs of a checkpoint or of a configured architecture, both conventions."""

from __future__ import annotations

import argparse

import torch

from pcsr_lightning.apps.commands.common import K_VALUE, SCALE_VALUE, add_image_flags, format_table
from pcsr_lightning.config import backbone_names
from pcsr_lightning.inference.router import class_counts
from pcsr_lightning.inference.session import InferenceSession
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.io.images import read_image
from pcsr_lightning.io.weights import load_model
from pcsr_lightning.measure.flops import CONVENTIONS
from pcsr_lightning.measure.meter import FlopsMeter, all_on, build_arch
from pcsr_lightning.models.pcsr import model_kind
from pcsr_lightning.models.sampler import output_size


def add_parser(sub) -> None:
    p = sub.add_parser("flops", help="per-module FLOPs (paper and fvcore conventions); total on the last line")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="a project checkpoint")
    src.add_argument("--arch", choices=backbone_names(),
                     help="an architecture from conf/backbone (PCSR unless --original)")
    p.add_argument("--original", action="store_true", help="with --arch: the original network, not PCSR")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--lr-size", type=int, nargs=2, metavar=("H", "W"), help="LR input size")
    size.add_argument("--image", help="an LR image: PCSR is routed on it at --k (needs --ckpt)")
    p.add_argument("--scale", type=SCALE_VALUE, default=4.0,
                   help="upscaling factor (default 4; an original network counts at its own only)")
    p.add_argument("--k", type=K_VALUE, default=0.0, help="with --image: the routing's cost knob")
    p.add_argument("--convention", choices=CONVENTIONS, default="paper", help="which total ends the output")
    add_image_flags(p)
    p.set_defaults(run=run)


def breakdown_rows(parts: dict[str, dict[str, int]], pixels: dict[str, int]) -> list[list[str]]:
    names = list(parts["paper"])
    return [[n, str(pixels.get(n, "")), f"{parts['paper'][n]:,}", f"{parts['fvcore'][n]:,}"] for n in names]


def report(title: str, parts: dict[str, dict[str, int]], pixels: dict[str, int]) -> None:
    print(title)
    rows = breakdown_rows(parts, pixels)
    rows.append(["total", "", f"{sum(parts['paper'].values()):,}", f"{sum(parts['fvcore'].values()):,}"])
    print(format_table(["module", "pixels", "paper FLOPs", "fvcore MACs"], rows))
    print()


def run(args: argparse.Namespace) -> int:
    if args.original and not args.arch:
        raise ValueError("--original goes with --arch (a checkpoint knows its own kind)")
    if args.image and not args.ckpt:
        raise ValueError("--image needs --ckpt: routing needs trained weights")
    model = build_arch(args.arch, args.original) if args.arch else load_model(args.ckpt).model
    lr = read_image(args.image, args.max_pixels)[None] if args.image else None
    lr_size = tuple(lr.shape[-2:]) if lr is not None else tuple(args.lr_size)
    if min(lr_size) < 1:
        raise ValueError(f"--lr-size must be positive, got {lr_size}")
    meter = FlopsMeter(model)
    conventions = ("paper", "fvcore")
    if model_kind(model) == "original":
        if float(args.scale) != float(model.scale):
            raise ValueError(f"this original network upscales x{model.scale} only, got --scale {args.scale}")
        parts = {c: meter.network(lr_size, c) for c in conventions}
        report(f"original network, LR {lr_size[0]}x{lr_size[1]}, x{model.scale}", parts, {})
        print(sum(parts[args.convention].values()))
        return 0
    hh, ww = output_size(lr_size, args.scale)
    m = model.num_classes
    names = ["classifier", *[f"upsamplers.{j}" for j in range(m)]]
    if lr is not None:
        with torch.no_grad():
            counts = class_counts(InferenceSession(model, lr, args.scale).classes(RoutingSpec(k=args.k)), m)
        cases = [(f"routed at k={args.k:g}", counts)]
    else:
        cases = [("all-light", all_on(m, hh * ww, m - 1)), ("all-heavy", all_on(m, hh * ww, 0))]
    total = 0
    for label, counts in cases:
        parts = {c: meter.routed(lr_size, args.scale, counts, c) for c in conventions}
        pixels = dict(zip(names, [hh * ww, *counts]))
        report(f"PCSR {label}, LR {lr_size[0]}x{lr_size[1]} -> {hh}x{ww}", parts, pixels)
        total = sum(parts[args.convention].values())
    print(total)
    return 0
