"""channels_last vs NCHW on CPU for the released CARN and FSRCNN pairs: what `--memory-format auto` rests on.

Every model runs in both layouts, all variants interleaved round by round (a shared machine drifts;
the paired ratio cancels most of it). Usage, after `experiments/probes/busy_bench.sh`
(or `pcsr import-official` of each released .pth) put the checkpoints in results/checkpoints:
    .venv/bin/python experiments/probes/layout_cpu.py [--hr-size 1080x1920] [--rounds 5]
"""

import argparse
import statistics

import torch

from pcsr_lightning.bench.inputs import parse_size, photo_mosaic
from pcsr_lightning.bench.timing import time_rounds
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.inference.layout import as_input, in_memory_format
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.io.checkpoint import load_checkpoint

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", default="results/checkpoints")
    parser.add_argument("--hr-size", default="1080x1920")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lr = downscale(photo_mosaic(parse_size(args.hr_size)), 4).clamp(0, 1)[None]
    fns = {}
    for family in ("carn", "fsrcnn"):
        for tag, fmt in FORMATS.items():
            original = in_memory_format(load_checkpoint(f"{args.ckpt_dir}/{family}-x4.ckpt").model, fmt)
            pcsr = in_memory_format(load_checkpoint(f"{args.ckpt_dir}/{family}-pcsr-phase1.ckpt").model, fmt)
            x = as_input(lr, fmt)
            fns[f"{family} original {tag}"] = lambda m=original, x=x: m(x)
            fns[f"{family}-pcsr k=0 {tag}"] = lambda m=pcsr, x=x: upscale(m, x, 4)
    with torch.no_grad():
        times = time_rounds(fns, torch.device("cpu"), args.rounds, warmup=1)
    print(f"HR {args.hr_size}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    for name in fns:
        if name.endswith("channels_last"):
            base = name.removesuffix("channels_last") + "nchw"
            ratio = statistics.median(a / b for a, b in zip(times[name], times[base]))
            print(f"{base.removesuffix(' nchw'):22s} NCHW {statistics.median(times[base]):9.1f} ms  channels_last "
                  f"{statistics.median(times[name]):9.1f} ms  paired ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
