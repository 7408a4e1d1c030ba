"""The held-out scikit-image sample photos as a small test set: the default data of ``make reproduce-table``.

Only the photos the ``samples`` training data keeps aside (``SAMPLE_VAL``): a table measured on training
images would flatter every model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcsr_lightning.io.images import write_png
from pcsr_lightning.data.sources import SAMPLE_VAL, sample_array


def materialize_samples(folder: str | Path, names=SAMPLE_VAL) -> Path:
    """Write the photos as RGB PNGs into ``folder`` (kept if already there); returns the folder."""
    folder = Path(folder)
    for name in names:
        path = folder / f"{name}.png"
        if path.is_file():
            continue
        arr = sample_array(name)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        write_png(np.ascontiguousarray(arr[..., :3]), path)
    return folder
