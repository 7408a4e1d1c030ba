import numpy as np
import pytest
import torch
from PIL import Image

from pcsr_lightning.io.images import ImageReadError, list_images, read_image, write_png


def test_modes_become_rgb(tmp_path):
    Image.fromarray(np.full((5, 6), 200, np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(np.full((5, 6, 4), 100, np.uint8), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((5, 6), 65535 // 2, np.uint16)).save(tmp_path / "deep.png")
    palette = Image.fromarray(np.full((5, 6, 3), 10, np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(tmp_path / "pal.png")
    for name, value in [("gray", 200 / 255), ("rgba", 100 / 255), ("deep", (65535 // 2) / 65535), ("pal", 10 / 255)]:
        img = read_image(tmp_path / f"{name}.png")
        assert img.shape == (3, 5, 6) and img.dtype == torch.float32
        torch.testing.assert_close(img, torch.full((3, 5, 6), value), atol=2e-3, rtol=0)


def test_corrupt_image_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(bad)


def test_write_png_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    write_png(torch.zeros(3, 4, 4), target)
    before = target.read_bytes()

    def crash(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half")
        raise RuntimeError("disk full")

    from pathlib import Path

    monkeypatch.setattr(Image.Image, "save", crash)
    from pcsr_lightning.io.files import OutputError

    with pytest.raises(OutputError, match="cannot write .*out.png: disk full"):
        write_png(torch.ones(3, 4, 4), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_then_read_round_trip(tmp_path):
    img = torch.rand(3, 7, 9)
    write_png(img, tmp_path / "x.png")
    torch.testing.assert_close(read_image(tmp_path / "x.png"), (img * 255).round() / 255, atol=1e-6, rtol=0)
    assert list_images(tmp_path) == [tmp_path / "x.png"]


def test_png_levels_trade_size_for_time_and_keep_the_pixels(tmp_path):
    from pcsr_lightning.io.images import PNG_COMPRESS_LEVEL

    img = torch.rand(3, 48, 64) * 0.2 + torch.linspace(0, 0.8, 64)  # noisy ramp: compressible, not trivially
    sizes = {}
    for level in (0, PNG_COMPRESS_LEVEL, 9):
        path = write_png(img, tmp_path / f"l{level}.png", compress_level=level)
        sizes[level] = path.stat().st_size
        torch.testing.assert_close(read_image(path), (img.clamp(0, 1) * 255).round() / 255, atol=1e-6, rtol=0)
    assert sizes[0] > sizes[PNG_COMPRESS_LEVEL] >= sizes[9]  # level 0 stores the pixels uncompressed


@pytest.mark.parametrize("level", [-1, 10, 2.5, True, "6"])
def test_png_level_out_of_range_is_refused_before_writing(tmp_path, level):
    with pytest.raises(ValueError, match="PNG compression level must be an integer from 0 to 9"):
        write_png(torch.zeros(3, 4, 4), tmp_path / "x.png", compress_level=level)
    assert not any(tmp_path.iterdir())
