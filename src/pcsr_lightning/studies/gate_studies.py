"""Actions of the flat-tile gate's studies beyond the common ones (``studies.actions``).

``gate_grid``: the learned gate's threshold grid matched to the Laplacian's on the role's photos (val), so
that the two scorers are swept over the same skipped shares and each pair of rows skips the same number of
tiles, differing only in which.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.inference.gate import tile_scores
from pcsr_lightning.inference.spec import DEFAULT_TILE
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.images import list_images
from pcsr_lightning.studies.context import Context, Outcome


def matched_thresholds(ckpt: str, photos: Sequence, laplacian: Sequence[float], scale: float = 4.0,
                       tile: int = DEFAULT_TILE) -> list[float]:
    """Learned-gate thresholds skipping the same shares of the photos' tiles as the ``laplacian`` ones (on
    the LR ``pcsr eval`` makes: MATLAB-style bicubic)."""
    model = load(ckpt, "cpu")
    lap, learned = [], []
    for path in photos:
        _, lr = load_pair(path, scale, None, None)
        with torch.inference_mode():
            lap.append(tile_scores(model.network, lr[None], tile, "laplacian").flatten())
            learned.append(tile_scores(model.network, lr[None], tile, "learned").flatten())
    lap_all, ranked = torch.cat(lap), torch.cat(learned).sort().values
    shares = [float((lap_all < t).float().mean()) for t in laplacian]
    return [float(ranked[min(len(ranked) - 1, round(share * len(ranked)))]) for share in shares]


def gate_grid(ctx: Context, ckpt: str, laplacian: Sequence[float], hr_dir: str | None = None,
              scale: float = 4.0) -> Outcome:
    """The two scorers' grids on the role's photos (or ``hr_dir``): ``laplacian`` as given, ``learned``
    matched to it; one row per pair, with the share of tiles each skips."""
    folder = hr_dir if hr_dir is not None else ctx.photos
    if folder is None:
        raise ValueError("gate_grid reads photos: give it hr_dir or a role (val) whose folder is set")
    photos = list_images(folder, on_skip=None)
    if not photos:
        raise ValueError(f"gate_grid: no photo in {folder}")
    laplacian = [float(t) for t in laplacian]
    learned = matched_thresholds(ckpt, photos, laplacian, scale)
    rows = [{"laplacian": a, "learned": b} for a, b in zip(laplacian, learned, strict=True)]
    return Outcome(rows=rows, values={"laplacian": laplacian, "learned": learned})
