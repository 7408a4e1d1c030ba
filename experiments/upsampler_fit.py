"""How well each checkpoint's light upsampler U_1 fits a folder of photos, and how much of its width it uses.

For each photo (LR by MATLAB-style bicubic x4, the paper's crop) every HR pixel is rendered by U_1 alone
(the all-light end, class 1 forced), and the mean absolute and squared errors against the HR photo are
taken on 0-255 levels with the PSNR border shaved. Run on the training photos it tells whether a re-trained
U_1 is short because it fits the photos it learned from less well (an optimisation shortfall) or because
it does not carry over to others. Then, on a 96x96 LR corner of every ``--every``-th photo, the share of
queries on which each hidden ReLU unit of U_1 is positive: a unit at 0.00 is dead (no gradient reaches it).

    python experiments/upsampler_fit.py PHOTOS A.ckpt B.ckpt [--threads 2] [--every 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.inference.session import upscale_forced
from pcsr_lightning.io.checkpoint import load_checkpoint
from pcsr_lightning.io.images import list_images
from pcsr_lightning.measure.metrics import shave_for
from pcsr_lightning.models.sampler import make_cell, make_coord

SCALE = 4


def pairs_of(photos: list[Path]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(HR, LR) of each photo, read and downscaled once for every checkpoint."""
    return [load_pair(path, SCALE, None, "paper") for path in photos]


def fit(net, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Mean over photos of U_1's all-light L1 and MSE, in 0-255 levels."""
    shave = shave_for(SCALE)
    l1 = mse = 0.0
    for hr, lr in pairs:
        with torch.no_grad():
            sr = upscale_forced(net, lr[None], SCALE, 1).sr[0].clamp(0, 1)
        diff = (sr - hr)[..., shave:-shave, shave:-shave] * 255
        l1 += float(diff.abs().mean())
        mse += float(diff.pow(2).mean())
    return l1 / len(pairs), mse / len(pairs)


def active_shares(net, pairs: list[tuple[torch.Tensor, torch.Tensor]], side: int = 96) -> list[list[float]]:
    """Per hidden layer of U_1, the share of queries on which each unit is positive."""
    relus = [m for m in net.upsamplers[1].layers if isinstance(m, torch.nn.ReLU)]
    seen: list[list[torch.Tensor]] = [[] for _ in relus]

    def watch(k: int):
        return lambda module, inputs, out: seen[k].append((out > 0).reshape(-1, out.shape[-1]).float().mean(0))

    hooks = [r.register_forward_hook(watch(k)) for k, r in enumerate(relus)]
    hr_side = side * SCALE
    coord = make_coord((hr_side, hr_side)).reshape(1, -1, 2)
    cell = make_cell((hr_side, hr_side), coord.shape[1])[None]
    for _, lr in pairs:
        with torch.no_grad():
            net.alone(lr[None, :, :side, :side], coord, cell, 1)
    for h in hooks:
        h.remove()
    return [torch.stack(s).mean(0).tolist() for s in seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("ckpts", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", type=int, default=3, help="unit activity on every N-th photo")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = list_images(args.photos)
    pairs = pairs_of(photos)
    print(f"{len(photos)} photos in {args.photos}; U_1 alone on every pixel, x{SCALE}, 0-255 levels\n")
    print("| checkpoint | mean L1 | mean MSE | dead units per hidden layer |")
    print("| --- | --- | --- | --- |")
    details = []
    for ckpt in args.ckpts:
        net = load_checkpoint(ckpt).model.eval()
        l1, mse = fit(net, pairs)
        shares = active_shares(net, pairs[:: args.every])
        dead = " / ".join(f"{sum(s == 0.0 for s in layer)} of {len(layer)}" for layer in shares)
        print(f"| {ckpt} | {l1:.4f} | {mse:.3f} | {dead} |", flush=True)
        details.append((ckpt, shares))
    print()
    for ckpt, shares in details:
        print(f"{ckpt}: active share per unit")
        for k, layer in enumerate(shares):
            print(f"  hidden layer {k + 1}: " + " ".join(f"{s:.2f}" for s in layer))


if __name__ == "__main__":
    main()
