"""Helpers of experiments/learned_gate.sh: threshold grids for the learned gate, and its report.

    python experiments/learned_gate_report.py thresholds --ckpt GATED.ckpt --images VAL_DIR --laplacian T1 T2 ...
prints learned-gate thresholds that skip the same shares of the validation photos' tiles as the given
Laplacian thresholds (so both scorers are swept over the same range of skipped shares);

    python experiments/learned_gate_report.py table OUT FAMILY ...
prints the markdown tables of OUT/{val,test}_<family>_{laplacian,learned}.csv (``pcsr eval --summary``):
PSNR, GFLOPs (paper convention) and skipped share per threshold, beside PCSR at k = 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pcsr_lightning.evaluation.compare import read_summary
from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.inference.gate import tile_scores
from pcsr_lightning.inference.spec import DEFAULT_TILE
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.images import list_images

SCORERS = ("laplacian", "learned")


def matched_thresholds(ckpt: str, images: str, laplacian: list[float], tile: int = DEFAULT_TILE) -> list[float]:
    model = load(ckpt, "cpu")
    scores = {s: [] for s in SCORERS}
    for path in list_images(images, on_skip=None):
        _, lr = load_pair(path, 4.0, None, None)  # the LR pcsr eval makes (MATLAB bicubic x4)
        lr = lr[None]
        with torch.no_grad():
            for s in SCORERS:
                scores[s].append(tile_scores(model.network, lr, tile, s).flatten())
    lap, learned = torch.cat(scores["laplacian"]), torch.cat(scores["learned"]).sort().values
    shares = [float((lap < t).float().mean()) for t in laplacian]
    return [float(learned[min(len(learned) - 1, int(round(share * len(learned))))]) for share in shares]


def table(out: Path, family: str) -> str:
    lines = []
    for split in ("val", "test"):
        rows = {s: read_summary(out / f"{split}_{family}_{s}.csv") for s in SCORERS
                if (out / f"{split}_{family}_{s}.csv").is_file()}
        if not rows:
            continue
        plain = next(r for r in next(iter(rows.values())) if r["setting"] == "k" and r["skip_flat"] is None)
        lines += [f"**{family}, {split} photos** (k = 0; PCSR without the gate: {plain['psnr']:.3f} dB, "
                  f"{plain['gflops_paper']:.2f} GFLOPs)", "",
                  "| scorer | threshold | PSNR (dB) | vs PCSR (dB) | GFLOPs | GFLOPs vs PCSR | skipped share |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for scorer, summary in rows.items():
            gated = sorted((r for r in summary if r["setting"] == "k" and r["skip_flat"] is not None),
                           key=lambda r: r["skip_flat"])
            for r in gated:
                change = r["psnr"] - plain["psnr"]
                lines.append(f"| {scorer} | {r['skip_flat']:.4g} | {r['psnr']:.3f} | {change:+.3f} | "
                             f"{r['gflops_paper']:.2f} | {100 * r['gflops_paper'] / plain['gflops_paper']:.1f} % | "
                             f"{r['skipped_share']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("thresholds")
    t.add_argument("--ckpt", required=True)
    t.add_argument("--images", required=True)
    t.add_argument("--laplacian", type=float, nargs="+", required=True)
    r = sub.add_parser("table")
    r.add_argument("out")
    r.add_argument("families", nargs="+")
    args = parser.parse_args()
    if args.command == "thresholds":
        print(" ".join(f"{t:.5g}" for t in matched_thresholds(args.ckpt, args.images, args.laplacian)))
    else:
        print("\n".join(table(Path(args.out), f) for f in args.families))


if __name__ == "__main__":
    main()
