"""The flat-tile gate with a loss budget: the user says how many dB below PCSR they accept, the gate decides
per image how many tiles to skip.

A fixed threshold loses a different number of dB on each photo: what a skipped tile costs in dB depends on
how far PCSR itself is from the truth on that image, which the LR alone does not tell. The budget is
10 log10(MSE_gate / MSE_pcsr) against the HR image; filling a tile adds about the fill's squared
difference from PCSR there to MSE_gate, so the gate may skip tiles whose summed squared difference,
over the image's pixels, stays below MSE_pcsr (10^(budget/10) - 1). The gate calibrates both sides at
run time, from the LR only:

- **what filling costs** (``sample_losses``): the candidate tiles (scoring below the threshold) in score
  order are cut into ``BUDGET_STRATA`` strata of equal count; ``BUDGET_SAMPLES`` random tiles of each
  (a fixed seed: the same image gets the same plan) run PCSR for real on crops of tile + halo, and the
  fill's squared difference from PCSR is measured on them. Each stratum's tiles are counted at the
  largest difference sampled in it or in any flatter stratum (the losses grow with the score), an upper
  estimate. The sampled tiles are PCSR's in the result: they stay active.
- **the error level** (``self_error``): PCSR on the LR downscaled once more by the scale, against the LR
  itself, times ``SELF_ERROR_SHARE``: the small image is harder than the large one (more detail per pixel),
  so its error overstates the large image's; the share is a low quantile of the ratio measured on training
  photos (the ``calibration`` step of the ``gate_budget`` study), so the level is an under-estimate on most
  photos and the loss an over-estimate.

The gate then skips the longest run of the score order whose estimated loss stays within the budget.
Where even skipping every candidate would save fewer backbone pixels than the calibration encodes
(``calibration_pays``: small images, few flat tiles) it skips nothing and calibrates nothing. What
this promises, and how often it was broken on photos that chose nothing, is measured in
``experiments/results/skip_budget.md``; it is an estimate with a stated failure rate, not a bound.
Both calibration runs are counted in the FLOPs (``gate.Budgeted``) and are part of the wall clock.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pcsr_lightning.inference.gate import Budgeted, CalibrationRun, SkipPlan, plan_active, tile_scores
from pcsr_lightning.inference.routed import exact, prepare, render, route
from pcsr_lightning.inference.spec import GateSpec
from pcsr_lightning.inference.tiling import receptive_radius
from pcsr_lightning.models.sampler import output_size

BUDGET_STRATA = 8  # strata of the candidates' score order, each sampled
BUDGET_SAMPLES = 2  # tiles sampled per stratum (run by PCSR for real)
BUDGET_SEED = 0  # the sample's seed: the same image and budget give the same plan
# MSE of PCSR on the full image / MSE of PCSR on its x-scale downscale against the LR: a low quantile over
# the fitting photos (the pool's train split; the gate_budget study's calibration step).
SELF_ERROR_SHARE = 0.1


def pcsr_run(model, lr: torch.Tensor, scale: float, k: float, threads: int | None = None):
    """PCSR (no gate) on the batch ``lr``: its (B,3,H,W) output in image range and (B,H*W) classes."""
    prepared = prepare(model, lr, scale, threads=threads)
    classes = route(model, prepared, k, False, threads)
    return render(model, prepared, classes, True, None, threads).sr, classes


def fill_of(model, lr: torch.Tensor, scale: int, fill: str) -> torch.Tensor:
    """The gate's fill of the whole of (B,3,h,w) ``lr`` (image range): torch's bicubic, as ``bicubic_rect``,
    or the model's fitted ``LinearFill``."""
    if fill == "linear":
        return model.fill(lr)
    return F.interpolate(lr, size=output_size(tuple(lr.shape[-2:]), scale), mode="bicubic", align_corners=False)


def same_layout(x: torch.Tensor) -> torch.memory_format:
    """channels_last when ``x`` is laid out so (the layout the model was given the image in), else NCHW."""
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format


def class_counts(classes: torch.Tensor, m: int) -> list[int]:
    """Pixels per class 0 .. m - 1 (m = M + 1 counts the gate's skipped class too)."""
    return torch.bincount(classes.flatten().cpu(), minlength=m).tolist()[:m]


def self_error(model, lr: torch.Tensor, scale: int, k: float, threads: int | None = None
               ) -> tuple[list[float], CalibrationRun | None]:
    """Per image of (B,3,h,w) ``lr``: the MSE of PCSR on ``lr`` downscaled by ``scale`` (torch's
    antialiased bicubic) against ``lr`` cropped to whole multiples (both clamped to [0, 1]); None as the
    run when the LR is too small to downscale (the level is then 0: nothing is skipped but exact fills)."""
    h, w = (n // scale * scale for n in lr.shape[-2:])
    if min(h, w) < 2 * scale:
        return [0.0] * lr.shape[0], None
    target = lr[..., :h, :w]
    small = F.interpolate(target, size=(h // scale, w // scale), mode="bicubic", antialias=True,
                          align_corners=False).clamp(0, 1).contiguous(memory_format=same_layout(lr))
    sr, classes = pcsr_run(model, small, float(scale), k, threads)
    mse = (sr.clamp(0, 1) - target).square().flatten(1).mean(1)
    run = CalibrationRun("self-calibration", small.shape[0] * small.shape[-2] * small.shape[-1],
                         classes.numel(), class_counts(classes, model.num_classes))
    return mse.tolist(), run


def tile_crop(ty: int, tx: int, tile: int, halo: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The LR crop (y0, y1, x0, x1) of tile (ty, tx) and the tiles its ``halo`` reaches, clipped to the
    image: its origin lies on the tile grid, so the gate's own plan (``plan_active``) runs the one tile in
    it with the halo it has in the whole image."""
    (h, w), reach = size, -(-halo // tile)
    return (max(0, (ty - reach) * tile), min(h, (ty + reach + 1) * tile), max(0, (tx - reach) * tile),
            min(w, (tx + reach + 1) * tile))


def sample_losses(model, lr: torch.Tensor, scale: int, tiles: list[tuple[int, int]], gate: GateSpec, halo: int,
                  k: float, threads: int | None = None) -> tuple[list[float], CalibrationRun]:
    """For each tile (ty, tx) of (1,3,h,w) ``lr``: the fill's summed squared difference from PCSR over the
    tile's HR pixels (channels averaged, both clamped to [0, 1]). PCSR runs as the gate runs it, on the
    tile alone: a crop of it and its neighbours (``tile_crop``, crops of one shape batched) planned with that
    tile active, so the backbone encodes the tile and its halo and the MLPs only the tile's HR pixels."""
    size, t = tuple(lr.shape[-2:]), gate.tile
    groups: dict[tuple[int, int], list[tuple[int, tuple, tuple]]] = {}
    for n, (ty, tx) in enumerate(tiles):
        y0, y1, x0, x1 = tile_crop(ty, tx, t, halo, size)
        groups.setdefault((y1 - y0, x1 - x0), []).append((n, (y0, y1, x0, x1), (ty - y0 // t, tx - x0 // t)))
    losses = [0.0] * len(tiles)
    run = CalibrationRun("budget sample", 0, 0, [0] * model.num_classes)
    for members in groups.values():
        batch = torch.cat([lr[..., y0:y1, x0:x1] for _, (y0, y1, x0, x1), _ in members]).contiguous(
            memory_format=same_layout(lr))
        scores = tile_scores(model, batch, t, gate.scorer)
        active = torch.zeros_like(scores, dtype=torch.bool)
        for i, (_, _, (ay, ax)) in enumerate(members):
            active[i, ay, ax] = True
        plan = plan_active(model, batch, float(scale), scores, active, gate.threshold, t, halo, scorer=gate.scorer,
                           fill=gate.fill)
        prepared = prepare(model, batch, float(scale), threads=threads, gate=plan)
        classes = route(model, prepared, k, False, threads)
        sr = render(model, prepared, classes, True, None, threads).sr
        filled = fill_of(model, batch, scale, gate.fill)
        diff = (sr.clamp(0, 1) - filled.clamp(0, 1)).square().mean(1)  # (n, H, W)
        for i, (n, (y0, y1, x0, x1), (ay, ax)) in enumerate(members):
            r0, c0 = ay * t * scale, ax * t * scale
            r1, c1 = min(diff.shape[1], r0 + t * scale), min(diff.shape[2], c0 + t * scale)
            losses[n] = float(diff[i, r0:r1, c0:c1].sum())
        counts = class_counts(classes, model.num_classes + 1)
        run.backbone_pixels += plan.encoded_pixels
        run.classified += sum(counts[: model.num_classes])
        run.counts = [a + b for a, b in zip(run.counts, counts)]
        run.filled += plan.skipped_pixels()
    return losses, run


def added_losses(order: np.ndarray, sampled: np.ndarray, strata: list[np.ndarray], sample_loss: dict[int, float]
                 ) -> np.ndarray:
    """What skipping each tile of the score ``order`` (flat tile indices) is estimated to add: nothing for
    a sampled tile (PCSR ran on it), else its stratum's envelope, the largest sampled loss in it or in a
    flatter stratum."""
    envelope, running = {}, 0.0
    for stratum in strata:
        running = max([running] + [sample_loss[int(t)] for t in stratum if int(t) in sample_loss])
        envelope.update((int(t), running) for t in stratum)
    return np.array([0.0 if sampled[t] else envelope[int(t)] for t in order])


def longest_within(added: np.ndarray, allowed: float) -> int:
    """The longest prefix of ``added`` whose sum stays within ``allowed``."""
    return int(np.searchsorted(np.cumsum(added), allowed * (1 + 1e-9), side="right"))


def calibration_pays(candidates: int, tile: int, halo: int, size: tuple[int, int], scale: int) -> bool:
    """Whether skipping every candidate could save more LR pixels of backbone than the calibration encodes
    (the sample's crops and the LR's downscale): where it cannot (small images, few flat tiles) the gate
    skips nothing and runs no calibration, so the budget never costs more than PCSR by more than the scoring."""
    h, w = size
    crop = min(h, tile + 2 * halo) * min(w, tile + 2 * halo)  # the window the sample encodes per tile
    sampled = min(candidates, BUDGET_STRATA * BUDGET_SAMPLES)
    return (candidates - sampled) * tile * tile > sampled * crop + (h // scale) * (w // scale)


def draw_sample(order: np.ndarray, generator: torch.Generator) -> tuple[list[np.ndarray], list[int]]:
    """The strata of ``order`` and ``BUDGET_SAMPLES`` random tiles of each (all of a smaller stratum)."""
    strata = [s for s in np.array_split(order, min(BUDGET_STRATA, len(order))) if len(s)]
    picks = []
    for stratum in strata:
        chosen = torch.randperm(len(stratum), generator=generator)[:BUDGET_SAMPLES].tolist()
        picks += [int(stratum[i]) for i in sorted(chosen)]
    return strata, picks


@exact
def plan_budget(model, lr: torch.Tensor, scale: float, gate: GateSpec, k: float = 0.0, threads: int | None = None
                ) -> SkipPlan:
    """The gate's plan for (B,3,h,w) ``lr`` under ``gate.budget`` (see the module's docstring): candidates
    are the tiles scoring below ``gate.threshold``; the losses are against PCSR at cost knob ``k``."""
    s = int(scale)
    halo = receptive_radius(model.backbone) if gate.halo is None else gate.halo
    scores = tile_scores(model, lr, gate.tile, gate.scorer)
    active = torch.ones_like(scores, dtype=torch.bool)
    sampled = torch.zeros_like(active)
    levels, estimates, runs = [], [], []
    hh, ww = output_size(tuple(lr.shape[-2:]), scale)
    factor = math.expm1(min(gate.budget, 3000.0) * math.log(10) / 10)  # 10^(b/10) - 1; beyond 3000 dB: no limit
    for i in range(lr.shape[0]):
        flat = scores[i].flatten().cpu()
        candidates = torch.nonzero(flat < gate.threshold).squeeze(1)
        if gate.budget == 0 or not calibration_pays(candidates.numel(), gate.tile, halo, tuple(lr.shape[-2:]), s):
            levels.append(math.nan)
            estimates.append(0.0)
            continue
        order = candidates[torch.argsort(flat[candidates], stable=True)].numpy()
        generator = torch.Generator().manual_seed(BUDGET_SEED)
        strata, picks = draw_sample(order, generator)
        nx = scores.shape[-1]
        losses, run = sample_losses(model, lr[i : i + 1], s, [(t // nx, t % nx) for t in picks], gate, halo, k,
                                    threads)
        mse_self, self_run = self_error(model, lr[i : i + 1], s, k, threads)
        runs += [r for r in (run, self_run) if r is not None]
        level = SELF_ERROR_SHARE * mse_self[0]
        allowed = level * factor * hh * ww  # summed squared difference (channels averaged) the budget allows
        is_sampled = np.zeros(flat.numel(), dtype=bool)
        is_sampled[picks] = True
        added = added_losses(order, is_sampled, strata, dict(zip(picks, losses)))
        n = longest_within(added, allowed)
        skip = torch.as_tensor([int(t) for t in order[:n] if not is_sampled[t]], dtype=torch.long)
        active[i].view(-1)[skip.to(active.device)] = False
        sampled[i].view(-1)[torch.as_tensor(picks, dtype=torch.long, device=active.device)] = True
        levels.append(level)
        spent = float(added[:n].sum())
        estimates.append(10 * math.log10(1 + spent / (level * hh * ww)) if level > 0 else 0.0)
    plan = plan_active(model, lr, scale, scores, active, gate.threshold, gate.tile, gate.halo, scorer=gate.scorer,
                       fill=gate.fill)
    plan.budget = Budgeted(gate.budget, levels, sampled, estimates, runs)
    return plan

