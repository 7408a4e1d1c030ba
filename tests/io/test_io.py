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
