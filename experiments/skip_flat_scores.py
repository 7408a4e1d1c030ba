"""Which flatness score and which cheap reconstruction the flat-tile gate should use, measured.

For every image of a folder: PCSR's output (k = 0) and the cheap candidates (bilinear, torch bicubic,
MATLAB bicubic), each pixel's squared error against the HR at 8-bit levels, summed per LR tile. Skipping
a set of tiles replaces PCSR's error there by the candidate's, so the PSNR of any skip set follows
exactly from these sums (the refinement's 3x3 means at the skip borders aside). For each score and tile
size: the largest threshold whose mean PSNR loss on the validation images stays within the budget, and
the skipped share and loss it gives on the test images. ``oracle`` ranks tiles by their actual loss
per pixel: what no score can beat, the room a learned gate would have. ``--fill-ckpt`` adds a smaller
PCSR as a cheap reconstruction (its all-light and k = 0 outputs over the whole image; its own cost is not
in these sums). Usage:
    python experiments/skip_flat_scores.py --ckpt X.ckpt --val DIR --test DIR [--tiles 16 32 64]
        [--fill-ckpt SMALL.ckpt]
"""

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.inference.gate import GATE_BORDER, flatness_scores, laplacian_magnitude
from pcsr_lightning.inference.layout import as_input
from pcsr_lightning.inference.session import upscale, upscale_forced
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.images import list_images
from pcsr_lightning.measure.metrics import quantize, shave_for

SCALE = 4


def window_max(pixel_map, tile, border):
    """(h, w) -> per-tile max over the tile grown by ``border``."""
    x = F.max_pool2d(pixel_map[None, None], 2 * border + 1, 1, border)[0, 0] if border else pixel_map
    return F.max_pool2d(x[None, None], tile, tile, ceil_mode=True)[0, 0]


def window_mean(pixel_map, tile, border):
    """(c, h, w) -> (c, ty, tx) means over the tile grown by ``border`` (clipped)."""
    return F.avg_pool2d(F.pad(pixel_map[None], (border,) * 4), tile + 2 * border, tile, ceil_mode=True,
                        count_include_pad=False)[0] if border else F.avg_pool2d(pixel_map[None], tile, tile,
                                                                                   ceil_mode=True)[0]


def candidate_scores(lr, tile, border=GATE_BORDER):
    """Every score tried, (ty, tx) each, from the (3, h, w) LR in [0, 1]."""
    p = F.pad(lr[None], (1, 1, 1, 1), mode="replicate")[0]
    highpass = (lr - F.avg_pool2d(p[None], 3, 1)[0]).abs().amax(0)
    lap = laplacian_magnitude(lr[None])[0]
    mean, sq = window_mean(lr, tile, border), window_mean(lr * lr, tile, border)
    neg = -F.max_pool2d(-F.pad(lr[None], (border,) * 4, mode="replicate"), tile + 2 * border, tile, ceil_mode=True)[0]
    pos = F.max_pool2d(F.pad(lr[None], (border,) * 4, mode="replicate"), tile + 2 * border, tile, ceil_mode=True)[0]
    ty, tx = math.ceil(lr.shape[1] / tile), math.ceil(lr.shape[2] / tile)
    return {
        "laplacian": flatness_scores(lr[None], tile, border)[0],
        "highpass": window_max(highpass, tile, border),
        "mean |laplacian|": window_mean(lap[None], tile, border)[0],
        "std": (sq - mean * mean).clamp_min(0).sqrt().amax(0),
        "range": (pos - neg).amax(0)[:ty, :tx],
    }


def tile_errors(levels, hr, tile, shave):
    """Summed squared error of (3, H, W) 8-bit levels per LR tile's HR block (x4), border shaved."""
    se = ((levels - hr) ** 2).sum(0)
    se[:shave], se[-shave:], se[:, :shave], se[:, -shave:] = 0, 0, 0, 0
    block = tile * SCALE
    ny, nx = math.ceil(se.shape[0] / block), math.ceil(se.shape[1] / block)
    se = F.pad(se, (0, nx * block - se.shape[1], 0, ny * block - se.shape[0]))
    return se.view(ny, block, nx, block).sum((1, 3))


def image_data(model, path, fill=None):
    hr, lr = load_pair(path, SCALE, None, None)
    x = as_input(lr[None], torch.channels_last)
    with torch.no_grad():
        sr = upscale(model, x, SCALE).sr[0]
        lightest = None if fill is None else fill.num_classes - 1  # U_0 is the heaviest
        small = {} if fill is None else {"small all-light": upscale_forced(fill, x, SCALE, lightest).sr[0],
                                         "small k=0": upscale(fill, x, SCALE).sr[0]}
    size = tuple(hr.shape[-2:])
    cheap = {"bilinear": F.interpolate(lr[None], size=size, mode="bilinear", align_corners=False)[0],
             "bicubic": F.interpolate(lr[None], size=size, mode="bicubic", align_corners=False)[0],
             "matlab bicubic": imresize(lr[None], size)[0], **small}
    levels = {name: quantize(x) for name, x in {"pcsr": sr, **cheap}.items()}
    pixels = 3 * (size[0] - 2 * shave_for(SCALE)) * (size[1] - 2 * shave_for(SCALE))
    return {"lr": lr, "hr": quantize(hr), "levels": levels, "pixels": pixels}


def psnr_of(se, pixels):
    return 10 * math.log10(255**2 * pixels / se)


def evaluate_rule(images, tile, key, cheap, threshold):
    """Mean PSNR loss (dB) and skipped share over ``images`` when tiles score below ``threshold``."""
    losses, shares = [], []
    for d in images:
        ours, theirs, score, area = d["tiles"][tile][cheap]
        skip = score[key] < threshold
        base = float(ours.sum())
        losses.append(psnr_of(base, d["pixels"]) - psnr_of(base + float((theirs - ours)[skip].sum()), d["pixels"]))
        shares.append(float(area[skip].sum() / area.sum()))
    return sum(losses) / len(losses), max(losses), sum(shares) / len(shares)


def largest_threshold(images, tile, key, cheap, budget):
    lo, hi = 0.0, 1.0 if key != "oracle" else 1e4
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if evaluate_rule(images, tile, key, cheap, mid)[0] <= budget else (lo, mid)
    return lo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--val", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--tiles", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--budget", type=float, default=0.05, help="mean PSNR loss allowed on the validation set, dB")
    parser.add_argument("--fill-ckpt", help="a smaller PCSR tried as the cheap reconstruction too")
    parser.add_argument("--out", help="Markdown table to write")
    args = parser.parse_args()
    model = load(args.ckpt, "cpu", memory_format="channels_last").network.eval()
    fill = None if args.fill_ckpt is None else load(args.fill_ckpt, "cpu", memory_format="channels_last").network.eval()
    cheaps = ["bilinear", "bicubic", "matlab bicubic"] + ([] if fill is None else ["small all-light", "small k=0"])
    splits = {"val": [], "test": []}
    for split, folder in (("val", args.val), ("test", args.test)):
        for path in list_images(folder):
            d = image_data(model, path, fill)
            d["tiles"] = {}
            for tile in args.tiles:
                scores = candidate_scores(d["lr"], tile)
                ours = tile_errors(d["levels"]["pcsr"], d["hr"], tile, shave_for(SCALE))
                h, w = d["lr"].shape[-2:]
                rows = torch.tensor([min(tile, h - y) for y in range(0, h, tile)], dtype=torch.float64)
                cols = torch.tensor([min(tile, w - x) for x in range(0, w, tile)], dtype=torch.float64)
                area = rows[:, None] * cols[None]  # LR pixels per tile
                d["tiles"][tile] = {}
                for cheap in cheaps:
                    theirs = tile_errors(d["levels"][cheap], d["hr"], tile, shave_for(SCALE))
                    oracle = (theirs - ours) / (area * SCALE * SCALE)
                    d["tiles"][tile][cheap] = (ours, theirs, {**scores, "oracle": oracle}, area)
            del d["levels"], d["hr"]
            splits[split].append(d)
            print(f"{split}: {path.name}", flush=True)
    lines = ["| tile | cheap | score | threshold | val loss dB (worst) | val skipped "
             "| test loss dB (worst) | test skipped |",
             "|" + " --- |" * 8]
    for tile in args.tiles:
        for cheap in cheaps:
            for key in ("laplacian", "highpass", "mean |laplacian|", "std", "range", "oracle"):
                t = largest_threshold(splits["val"], tile, key, cheap, args.budget)
                v, te = (evaluate_rule(splits[s], tile, key, cheap, t) for s in ("val", "test"))
                lines.append(f"| {tile} | {cheap} | {key} | {t:.4g} | {v[0]:.3f} ({v[1]:.3f}) | {v[2]:.3f} | "
                             f"{te[0]:.3f} ({te[1]:.3f}) | {te[2]:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
