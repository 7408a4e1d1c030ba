"""Render blocks, classifier bands and refinement bands at multiples of the size derived from the L2 cache.

Checks the rule of `inference/cache.py` on the machine it runs on: each part of CARN-PCSR's routed path
(channels_last, k=0) at 1/4 .. 4x its default size, interleaved round by round, paired against 1x.
    .venv/bin/python experiments/probes/cache_sizes_cpu.py [--hr-size 1080x1920] [--rounds 5]
"""

import argparse
import statistics

import torch

from pcsr_lightning.bench.inputs import parse_size, photo_mosaic
from pcsr_lightning.bench.timing import time_rounds
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.inference.cache import l2_bytes_per_core
from pcsr_lightning.inference.kernels import CLASSIFIER_BAND_QUERIES, FoldedLayer, block_queries
from pcsr_lightning.inference.refinement import band_rows, refine_in_place
from pcsr_lightning.inference.routed import _render_class, backbone_features, prepare, render, route
from pcsr_lightning.io.checkpoint import load_checkpoint

FACTORS = (1, 0.25, 0.5, 2, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="results/checkpoints/carn-pcsr-phase1.ckpt")
    parser.add_argument("--hr-size", default="1080x1920")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    cpu = torch.device("cpu")
    lr = downscale(photo_mosaic(parse_size(args.hr_size)), 4).clamp(0, 1)[None]
    lr = lr.contiguous(memory_format=torch.channels_last)
    model = load_checkpoint(args.ckpt).model.to(memory_format=torch.channels_last)
    feat = backbone_features(model, lr)
    prepared = prepare(model, lr, 4, feat=feat)
    classes = route(model, prepared, 0.0)
    hh, ww = prepared.grid.hr_size
    fns = {}
    for j, upsampler in enumerate(model.upsamplers):
        pixels = (classes[0] == j).nonzero().squeeze(1)
        folded = FoldedLayer.build(upsampler.linears[0], feat[0], prepared.grid)
        out = torch.empty(3, hh * ww)
        default = block_queries(out, folded.table.shape[1])
        for f in FACTORS:
            block = max(1, int(f * default))
            fns[f"U_{j} block x{f:g} ({block} queries)"] = (
                lambda u=upsampler, fo=folded, p=pixels, b=block, o=out: _render_class(u, fo, prepared.grid, p, o, b))
    default = CLASSIFIER_BAND_QUERIES
    for f in FACTORS:
        queries = max(ww, int(f * default))
        fns[f"classifier band x{f:g} ({queries} queries)"] = (
            lambda q=queries: prepare(model, lr, 4, max_queries=q, feat=feat))
    sr = render(model, prepared, classes, refine=False).sr
    class_map = classes.view(1, hh, ww)
    for f in FACTORS:
        rows = max(1, int(f * band_rows(ww)))
        fns[f"refinement band x{f:g} ({rows} rows)"] = lambda r=rows: refine_in_place(sr.clone(), class_map, 2, band=r)
    times = time_rounds(fns, cpu, args.rounds, warmup=1)
    print(f"HR {args.hr_size}, L2 {l2_bytes_per_core() >> 10} KiB per core, {torch.get_num_threads()} threads, "
          f"{args.rounds} interleaved rounds; ratio = median of same-round time / the x1 size's")
    groups = {}
    for name in fns:
        groups.setdefault(name.split(" x")[0], []).append(name)
    for names in groups.values():
        for name in names:
            ratio = statistics.median(a / b for a, b in zip(times[name], times[names[0]]))
            print(f"{name:48s} {statistics.median(times[name]):9.1f} ms  {ratio:.3f}")


if __name__ == "__main__":
    main()
