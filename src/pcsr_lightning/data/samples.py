"""The scikit-image sample photos as a small test set: the default data of ``make reproduce-table``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcsr_lightning.data.io import write_png

SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "camera", "brick", "gravel")


def materialize_samples(folder: str | Path, names=SAMPLE_PHOTOS) -> Path:
    """Write the photos as RGB PNGs into ``folder`` (kept if already there); returns the folder."""
    import skimage.data

    folder = Path(folder)
    for name in names:
        path = folder / f"{name}.png"
        if path.is_file():
            continue
        arr = getattr(skimage.data, name)()
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        write_png(np.ascontiguousarray(arr[..., :3]), path)
    return folder
