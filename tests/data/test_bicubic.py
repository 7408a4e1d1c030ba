import torch

from pcsr_lightning.data.bicubic import cubic, imresize, resize_matrix


def test_constant_images_stay_constant():
    img = torch.full((3, 37, 29), 0.37)
    for size in [(9, 7), (74, 58), (12, 29), (37, 100)]:
        torch.testing.assert_close(imresize(img, size), torch.full((3, *size), 0.37))


def test_cubic_kernel_values():
    # Keys (a = -0.5): 1 at 0, 0 at integers, 1.5|x|^3 - 2.5|x|^2 + 1 inside, the outer piece beyond.
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    torch.testing.assert_close(cubic(x), torch.tensor([1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0], dtype=torch.float64))


def test_x2_antialiased_weights_match_hand_derivation():
    # Shrinking by 2 stretches the kernel 2x: taps at offsets +-0.5, 1.5, 2.5, 3.5 input pixels get
    # 0.5*cubic(d/2) = 0.5 * [0.8671875, 0.2265625, -0.0703125, -0.0234375], summing to 1.
    mat = resize_matrix(16, 8)
    row = mat[4]  # output pixel 4 is centred between input pixels 8 and 9 (0-based)
    expected = torch.zeros(16, dtype=torch.float64)
    expected[5:13] = torch.tensor(
        [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875],
        dtype=torch.float64,
    )
    torch.testing.assert_close(row, expected)


def test_x4_weights_match_kernel_definition_and_symmetric_border():
    mat = resize_matrix(32, 8)
    for out in range(8):
        centre = (out + 0.5) * 4 - 0.5  # 0-based input coordinate of the output pixel centre
        weights = torch.zeros(32, dtype=torch.float64)
        for tap in range(-20, 52):
            w = 0.25 * cubic(torch.tensor(0.25 * (centre - tap), dtype=torch.float64))
            src = tap if 0 <= tap < 32 else (-tap - 1 if tap < 0 else 63 - tap)  # mirror, edge repeated
            weights[src] += w
        torch.testing.assert_close(mat[out], weights / weights.sum())


def test_downscale_of_a_ramp_interior():
    ramp = torch.arange(64, dtype=torch.float32).view(1, 1, 64).expand(1, 4, 64)
    out = imresize(ramp, (4, 16))
    # A symmetric kernel reproduces a linear ramp exactly away from the border: the mean of 4 pixels.
    torch.testing.assert_close(out[0, 0, 2:14], torch.arange(2, 14, dtype=torch.float32) * 4 + 1.5)


def test_upscale_reproduces_a_linear_ramp():
    # Keys' kernel reproduces linear functions: away from the border, output pixel i sits at input
    # coordinate (i + 0.5) / 4 - 0.5.
    ramp = torch.arange(16, dtype=torch.float32).view(1, 1, 16).expand(1, 2, 16)
    up = imresize(ramp, (8, 64))
    expected = (torch.arange(64, dtype=torch.float32) + 0.5) / 4 - 0.5
    torch.testing.assert_close(up[0, 0, 8:56], expected[8:56], atol=1e-5, rtol=0)
