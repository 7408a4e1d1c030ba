"""Flags shared by several subcommands."""

from __future__ import annotations

import argparse

from pcsr_lightning.inference.predict import RoutingOptions


def add_routing_flags(parser: argparse.ArgumentParser, several_k: bool = False) -> None:
    """``several_k``: --k takes a list (a sweep in one process) instead of one value."""
    parser.add_argument("--scale", type=float, default=4.0, help="upscaling factor (> 1; any value for PCSR)")
    if several_k:
        parser.add_argument("--k", type=float, nargs="+", default=[0.0], help="cost knob(s); several = a k sweep")
    else:
        parser.add_argument("--k", type=float, default=0.0, help="cost knob: larger k sends more pixels to light upsamplers")
    parser.add_argument("--adaptive", action="store_true", help="adaptive decision making (k-means), k unused")
    parser.add_argument("--no-refine", action="store_true", help="skip the pixel-wise refinement")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--tile", type=int, default=0, help="run the PCSR backbone on LR tiles of this size (huge images; 0 = whole)"
    )


def routing_from(args: argparse.Namespace) -> RoutingOptions:
    if args.tile < 0:
        raise ValueError(f"--tile must be >= 0, got {args.tile}")
    return RoutingOptions(k=args.k, adaptive=args.adaptive, refine=not args.no_refine, tile=args.tile)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
