"""oneDNN's fused linear + ReLU vs BLAS addmm for CARN-PCSR's upsampler layers, on this CPU's ISA.

Times each upsampler's layers after the folded first one (``kernels.BlockedTail``, query-major) on
blocks of the size the render gives each kernel, both ways the routed part runs them: on 2 workers of
one intra-op thread each (``inference.workers``) and as one caller over torch's intra-op threads.
Variants are interleaved round by round; GMAC/s counts the layers' multiply-adds. To see another ISA on
the same machine, cap the libraries (an emulation: the caches and clocks stay this CPU's):
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python experiments/probes/matmul_isa_cpu.py [--ckpt ...] [--queries 600000] [--rounds 5]
"""

import argparse
import statistics

import torch

from pcsr_lightning.bench.timing import time_rounds
from pcsr_lightning.inference.cache import cpu_cache_budget, l2_bytes_per_core
from pcsr_lightning.inference.kernels import ONEDNN_BLOCK_FACTOR, BlockedTail, onednn_linear_available
from pcsr_lightning.inference.workers import Workers
from pcsr_lightning.io.checkpoint import load_checkpoint


def tail_macs(mlp) -> int:
    return sum(lin.in_features * lin.out_features for lin in mlp.linears[1:])


def runner(mlp, onednn: bool, queries: int, workers: int):
    """A call that runs ``queries`` queries through the tail in blocks sized as the render sizes them."""
    threads = 1 if workers else torch.get_num_threads()
    width = mlp.linears[0].out_features
    block = cpu_cache_budget(threads) * (ONEDNN_BLOCK_FACTOR if onednn else 1) // (4 * width)

    def work(p0, local):
        if "tail" not in local:  # per thread, as in the render: its tail and its gathered block
            local["pre"] = torch.randn(block, width)
            local["tail"] = BlockedTail(mlp, block, local["pre"], query_major=True, onednn=onednn)
        local["tail"](local["pre"][: min(block, queries - p0)])

    def call():
        with Workers(workers) as pool:
            pool.run(work, range(0, queries, block))

    return call, block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="results/checkpoints/carn-pcsr-phase1.ckpt")
    parser.add_argument("--queries", type=int, default=600_000, help="queries per call (a 2K image's heavy ~800k)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if not onednn_linear_available():
        raise SystemExit("this PyTorch build has no oneDNN fused linear")
    model = load_checkpoint(args.ckpt).model
    fns, macs, blocks = {}, {}, {}
    for mlp in model.upsamplers:
        width = mlp.linears[0].out_features
        modes = ((f"{args.workers} workers x 1 thread", args.workers),
                 (f"1 caller x {torch.get_num_threads()} threads", 0))
        for mode, workers in modes:
            for kernel in ("onednn", "blas"):
                name = f"{width}-wide, {mode}, {kernel}"
                fns[name], blocks[name] = runner(mlp, kernel == "onednn", args.queries, workers)
                macs[name] = tail_macs(mlp) * args.queries
    times = time_rounds(fns, torch.device("cpu"), args.rounds, warmup=1)
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} intra-op threads, L2 {l2_bytes_per_core() >> 10} KiB per core, "
          f"{args.queries} queries per call, {args.rounds} interleaved rounds")
    print(f"{'variant':48s} {'block':>7s} {'median ms':>10s} {'GMAC/s':>7s} {'onednn/blas':>12s}")
    for name in fns:
        ms = statistics.median(times[name])
        ratio = ""
        if name.endswith("onednn"):
            blas = name[: -len("onednn")] + "blas"
            ratio = f"{statistics.median(a / b for a, b in zip(times[name], times[blas])):.3f}"
        print(f"{name:48s} {blocks[name]:7d} {ms:10.1f} {macs[name] / ms / 1e6:7.1f} {ratio:>12s}")


if __name__ == "__main__":
    main()
