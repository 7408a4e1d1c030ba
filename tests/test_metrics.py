import math

import torch

from pcsr_lightning.measure.metrics import psnr, shave_for


def test_one_level_everywhere_is_48_13_db():
    a = torch.full((3, 10, 10), 100 / 255)
    b = torch.full((3, 10, 10), 101 / 255)
    assert math.isclose(psnr(a, b, 0), 10 * math.log10(255**2), rel_tol=1e-12)


def test_border_is_shaved():
    a = torch.zeros(3, 12, 12)
    b = a.clone()
    b[:, :2] = 1.0  # only inside the shaved border
    assert psnr(a, b, 2) == math.inf
    assert psnr(a, b, 1) < 20


def test_rounding_and_clamping():
    a = torch.full((3, 4, 4), 0.5001)
    b = torch.full((3, 4, 4), 0.5)
    assert psnr(a, b, 0) == math.inf  # both round to 128
    assert psnr(a, b, 0, rounding=False) < math.inf
    assert psnr(torch.full((3, 4, 4), 1.7), torch.ones(3, 4, 4), 0) == math.inf


def test_shave_for_scale():
    assert shave_for(4) == 4 and shave_for(2.5) == 3
