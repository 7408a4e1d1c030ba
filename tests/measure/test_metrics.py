import math

import pytest
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


# ------------------------------------------------------------------ luma PSNR and SSIM

from pcsr_lightning.measure.metrics import gaussian_window, psnr_y, rgb_to_y, score, ssim  # noqa: E402


def gray(level: float, size: int = 20) -> torch.Tensor:
    return torch.full((3, size, size), level / 255)


def test_luma_is_matlab_rgb2ycbcr():
    # Y = 16 + (65.481 R + 128.553 G + 24.966 B) with R, G, B in [0, 1]
    levels = torch.tensor([255.0, 0.0, 0.0]).view(3, 1, 1)
    assert rgb_to_y(levels).item() == pytest.approx(16 + 65.481)
    levels = torch.tensor([51.0, 102.0, 204.0]).view(3, 1, 1)
    assert rgb_to_y(levels).item() == pytest.approx(16 + 65.481 * 0.2 + 128.553 * 0.4 + 24.966 * 0.8)
    assert rgb_to_y(torch.full((3, 1, 1), 255.0)).item() == pytest.approx(235.0)


def test_psnr_y_by_hand():
    # gray levels 100 and 101: Y differs by (65.481 + 128.553 + 24.966) / 255 = 219 / 255 everywhere
    assert psnr_y(gray(100), gray(101), 0) == pytest.approx(10 * math.log10(255**2 / (219 / 255) ** 2), rel=1e-12)
    # a pure blue error of one level moves Y by 24.966 / 255 only
    a, b = gray(100), gray(100)
    b[2] = 101 / 255
    assert psnr_y(a, b, 0) == pytest.approx(10 * math.log10(255**2 / (24.966 / 255) ** 2), rel=1e-12)
    assert psnr_y(a, b, 0) > psnr(a, b, 0)


def test_ssim_of_flat_images_by_hand():
    # no variance: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    ya, yb = 16 + 219 * 100 / 255, 16 + 219 * 120 / 255
    c1 = (0.01 * 255) ** 2
    expected = (2 * ya * yb + c1) / (ya**2 + yb**2 + c1)
    assert ssim(gray(100), gray(120), 0) == pytest.approx(expected, rel=1e-12)
    assert ssim(gray(100), gray(100), 2) == pytest.approx(1.0)


def test_ssim_matches_the_window_formula_written_out():
    """BasicSR's SSIM written out with explicit loops over the valid window positions."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 16, 17, generator=g), torch.rand(3, 16, 17, generator=g)
    ya, yb = (rgb_to_y((x * 255).round().double()).squeeze(0) for x in (a, b))
    w = gaussian_window()
    assert w.sum().item() == pytest.approx(1.0) and w[5, 5] == w.max() and w.shape == (11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(16 - 10):
        for j in range(17 - 10):
            pa, pb = ya[i:i + 11, j:j + 11], yb[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa * pa).sum() - ma**2, (w * pb * pb).sum() - mb**2
            cov = (w * pa * pb).sum() - ma * mb
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert ssim(a, b, 0) == pytest.approx(float(torch.stack(values).mean()), rel=1e-10)


def test_metrics_refuse_bad_input():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(gray(1, 14), gray(2, 14), 2)
    with pytest.raises(ValueError, match="RGB"):
        psnr_y(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), 0)
    with pytest.raises(ValueError, match="unknown metric"):
        score(["psnr", "lpips"], gray(1), gray(2), 0)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(3, 20, 20, generator=g), torch.rand(3, 20, 20, generator=g)
    assert score(["psnr", "ssim", "psnr_y"], a, b, 2) == {"psnr": psnr(a, b, 2), "ssim": ssim(a, b, 2),
                                                          "psnr_y": psnr_y(a, b, 2)}


def test_torchmetrics_psnr_is_the_same_number():
    from torchmetrics.functional.image import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(1, 3, 24, 24, generator=g), torch.rand(1, 3, 24, 24, generator=g)
    crop = 4
    qa, qb = ((x * 255).round().double()[..., crop:-crop, crop:-crop] for x in (a, b))
    theirs = float(peak_signal_noise_ratio(qa, qb, data_range=255.0))
    assert psnr(a, b, crop) == pytest.approx(theirs, rel=1e-6)  # torchmetrics ends in float32


def test_eval_settings_refuse_unknown_metrics():
    from pcsr_lightning.evaluation.evaluate import EvalSettings

    with pytest.raises(ValueError, match="unknown metric"):
        EvalSettings(ckpt="c.ckpt", hr_dir="hr", metrics=["psnr", "lpips"])
    assert EvalSettings(ckpt="c.ckpt", hr_dir="hr", metrics=["ssim"]).metrics == ["ssim"]


def test_correlation_by_hand():
    from pcsr_lightning.measure.metrics import correlation

    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert correlation(a, 3 * a - 7) == pytest.approx(1.0)
    assert correlation(a, -a) == pytest.approx(-1.0)
    # x - mean = (-1.5, -0.5, 0.5, 1.5), y - mean = (0.5, -0.5, -0.5, 0.5): sum of products 0
    assert correlation(a, torch.tensor([1.0, 0.0, 0.0, 1.0])) == pytest.approx(0.0)
    # y - mean = (-0.5, 0.5, -0.5, 0.5): sum of products 1, |x - mean| = sqrt(5), |y - mean| = 1
    assert correlation(a, torch.tensor([0.0, 1.0, 0.0, 1.0])) == pytest.approx(1 / math.sqrt(5))
    assert correlation(torch.ones(4), a) == 0.0
    with pytest.raises(ValueError, match="as many values"):
        correlation(a, a[:3])
