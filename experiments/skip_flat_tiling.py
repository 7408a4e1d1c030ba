"""The cost of tiling alone: the flat-tile gate at threshold 0 (every tile active) against the untiled path.

With every tile active the planned windows are the whole image (one backbone call, identical output);
what is left is the gate's own scoring and planning. For comparison, the design the planner replaces:
one crop per tile with its halo, all crops batched in one backbone call (``plan_windows(merge=False)``),
with the exact halo (the receptive radius) and a short one. All variants interleaved round by round
(a shared machine drifts; ratios are medians of same-round ratios). Usage:
    python experiments/skip_flat_tiling.py --ckpt X-pcsr.ckpt --image HR.png [--rounds 3] [--halos rf 8]
"""

import argparse
import statistics
from pathlib import Path

import torch

from pcsr_lightning.bench.timing import paired_ratio, time_rounds
from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.inference.gate import encode_windows, plan_skip, plan_windows
from pcsr_lightning.inference.layout import as_input
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.inference.spec import DEFAULT_TILE
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.inference.tiling import receptive_radius
from pcsr_lightning.measure.metrics import psnr, shave_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--image", required=True, help="an HR image; its LR by MATLAB-style bicubic x4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE)
    parser.add_argument("--halos", nargs="+", default=["rf", "8"])
    args = parser.parse_args()
    model = load(args.ckpt, "cpu", memory_format="channels_last").network.eval()
    hr, lr = load_pair(Path(args.image), 4, None, None)
    lr = as_input(lr[None], torch.channels_last)
    lr_norm = model.normalize(lr)
    h, w = lr.shape[-2:]
    every = torch.ones(1, -(-h // args.tile), -(-w // args.tile), dtype=torch.bool)
    halos = [receptive_radius(model.backbone) if x == "rf" else int(x) for x in args.halos]
    fns = {"backbone, whole image": lambda: model.encode(lr_norm),
           "gate scores + plan, threshold 0": lambda: plan_skip(model, lr, 4, 0.0, args.tile),
           "upscale": lambda: upscale(model, lr, 4),
           "upscale --skip-flat 0": lambda: upscale(model, lr, 4, skip_flat=0.0, skip_tile=args.tile)}
    pixels = {}
    for halo in halos:
        windows = plan_windows(every, (h, w), args.tile, halo, merge=False)
        pixels[halo] = sum(win.pixels for win in windows) / (h * w)
        fns[f"backbone, a crop per tile, halo {halo}"] = lambda windows=windows: encode_windows(model, lr_norm, windows)
    with torch.no_grad():
        quality = {}
        for halo in halos:
            feat = encode_windows(model, lr_norm, plan_windows(every, (h, w), args.tile, halo, merge=False))
            quality[halo] = psnr(upscale(model, lr, 4, feat=feat).sr[0], hr, shave_for(4))
        whole = psnr(upscale(model, lr, 4).sr[0], hr, shave_for(4))
        times = time_rounds(fns, torch.device("cpu"), args.rounds, warmup=1)
    base = times["backbone, whole image"]
    print(f"{args.image}: LR {h}x{w}, tile {args.tile}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    print("| variant | median ms | x whole-image backbone (paired) | LR pixels encoded | PSNR dB |")
    print("| --- | --- | --- | --- | --- |")
    for name, t in times.items():
        halo = next((x for x in halos if name.endswith(f"halo {x}")), None)
        enc = f"{pixels[halo]:.2f}x" if halo is not None else ("1.00x" if "backbone" in name else "")
        dbs = f"{quality[halo]:.3f}" if halo is not None else (f"{whole:.3f}" if name.startswith("upscale") else "")
        print(f"| {name} | {statistics.median(t):.0f} | {paired_ratio(t, base):.3f} | {enc} | {dbs} |")
    print(f"\nupscale --skip-flat 0 vs upscale: {paired_ratio(times['upscale --skip-flat 0'], times['upscale']):.3f}"
          " (paired)")


if __name__ == "__main__":
    main()
