"""One definition of a heavy pixel for every M, shared by refinement and heavy shares."""

from __future__ import annotations

import pytest
import torch

from pcsr_lightning.inference.refinement import refinement_mask
from pcsr_lightning.inference.router import heavy_mask, heavy_share


@pytest.mark.parametrize("m, heavy", [(1, [0]), (2, [0]), (3, [0]), (4, [0, 1]), (5, [0, 1]), (6, [0, 1, 2])])
def test_heavy_is_the_first_half_of_the_upsamplers(m, heavy):
    classes = torch.arange(m)
    assert heavy_mask(classes, m).nonzero().flatten().tolist() == heavy
    assert heavy_share(classes, m) == pytest.approx(len(heavy) / m)


def test_refinement_and_heavy_share_agree_for_m4():
    classes = torch.full((1, 5, 5), 3)
    classes[0, 2, 2] = 1  # heavy for M = 4: its 8 light neighbours are refined
    assert heavy_share(classes, 4) == pytest.approx(1 / 25)
    assert int(refinement_mask(classes, 4).sum()) == 8
    assert heavy_share(None, 4) is None
