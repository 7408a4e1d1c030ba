"""The pcsr console script: import, upscale and eval, including bad input."""

import csv
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import sample_photo
from factories import CARN_MEAN, original_config, pcsr_config, pcsr_net, save_tiny
from pcsr_lightning.apps.cli import main
from pcsr_lightning.io.checkpoint import save_checkpoint
from pcsr_lightning.io.images import read_image
from pcsr_lightning.models import CARN, PCSR

PCSR_CONFIG = pcsr_config("carn", [[24, 24], [8]], [8], CARN_MEAN)


@pytest.fixture
def tiny_ckpt(tmp_path):
    model = pcsr_net(CARN(nf=16), [[24, 24], [8]], [8], rgb_mean=CARN_MEAN)
    return save_checkpoint(tmp_path / "tiny.ckpt", model, PCSR_CONFIG)


@pytest.fixture
def photo_dir(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    img = (sample_photo("chelsea")[:, :64, :96] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).save(folder / "cat.png")
    Image.fromarray(img[..., 0]).save(folder / "gray.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return folder


def test_upscale_folder_with_a_broken_image(tiny_ckpt, photo_dir, tmp_path, capsys):
    out = tmp_path / "sr"
    args = ["upscale", "--ckpt", str(tiny_ckpt), "--input", str(photo_dir), "--output", str(out), "--class-map"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["cat.png", "cat_classes.png", "gray.png", "gray_classes.png"]
    assert read_image(out / "cat.png").shape == (3, 256, 384)


def test_upscale_single_file_non_integer_scale(tiny_ckpt, photo_dir, tmp_path):
    out = tmp_path / "sr"
    args = ["upscale", "--ckpt", str(tiny_ckpt), "--input", str(photo_dir / "cat.png"), "--output", str(out)]
    assert main(args + ["--scale", "2.5", "--k", "1", "--no-refine"]) == 0
    assert read_image(out / "cat.png").shape == (3, 160, 240)


def test_upscale_png_level_changes_the_file_not_the_pixels(tiny_ckpt, photo_dir, tmp_path, capsys):
    image = photo_dir / "cat.png"
    sizes = {}
    for level in ("0", "9"):
        out = tmp_path / f"sr{level}"
        args = ["upscale", "--ckpt", str(tiny_ckpt), "--input", str(image), "--output", str(out), "--class-map"]
        assert main(args + ["--png-level", level]) == 0
        sizes[level] = (out / "cat.png").stat().st_size
    assert sizes["0"] > sizes["9"]
    for name in ("cat.png", "cat_classes.png"):
        assert torch.equal(read_image(tmp_path / "sr0" / name), read_image(tmp_path / "sr9" / name))
    out = tmp_path / "bad"
    args = ["upscale", "--ckpt", str(tiny_ckpt), "--input", str(image), "--output", str(out), "--png-level", "12"]
    assert main(args) == 2
    assert "PNG compression level must be an integer from 0 to 9, got 12" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_eval_writes_per_image_and_summary_csv(tiny_ckpt, photo_dir, tmp_path, capsys):
    csv_path, summary = tmp_path / "results.csv", tmp_path / "summary.csv"
    args = ["eval", "--ckpt", str(tiny_ckpt), "--hr-dir", str(photo_dir), "--out", str(csv_path), "--adaptive"]
    code = main(args + ["--summary", str(summary)])
    assert code == 1  # broken.jpg is reported, the others are scored
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["image"] for r in rows] == ["cat.png", "gray.png", "mean"]  # the per-image CSV ends with the mean
    assert {"image", "psnr", "heavy_share", "gflops_fvcore", "gflops_paper"} <= set(rows[0])
    assert all(r["setting"] == "adaptive" for r in rows)
    mean = list(csv.DictReader(summary.open()))
    assert len(mean) == 1 and mean[0]["images"] == "2"
    psnrs = [float(r["psnr"]) for r in rows[:2]]
    assert float(mean[0]["psnr"]) == pytest.approx((psnrs[0] + psnrs[1]) / 2, abs=1e-3)
    assert float(rows[2]["psnr"]) == pytest.approx(float(mean[0]["psnr"]), abs=1e-5)
    assert 0 <= float(rows[0]["heavy_share"]) <= 1
    assert "broken.jpg" in capsys.readouterr().err
    assert "ssim" not in rows[0]  # only asked for


def test_eval_metrics_columns(tiny_ckpt, photo_dir, tmp_path, capsys):
    from pcsr_lightning.measure.metrics import psnr_y, ssim

    csv_path = tmp_path / "results.csv"
    code = main(["eval", "--ckpt", str(tiny_ckpt), "--hr-dir", str(photo_dir), "--out", str(csv_path), "--bicubic",
                 "--metrics", "psnr_y", "ssim"])
    assert code == 1
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0])[4:7] == ["psnr", "psnr_y", "ssim"]
    assert all(0 < float(r["ssim"]) <= 1 and float(r["psnr_y"]) > 0 for r in rows)
    # the bicubic row is the protocol applied to MATLAB-style bicubic of the LR
    from pcsr_lightning.evaluation.protocol import bicubic_sr, load_pair

    hr, lr = load_pair(photo_dir / "cat.png", 4.0, None, None)
    bicubic = next(r for r in rows if r["image"] == "cat.png" and r["setting"] == "bicubic")
    assert float(bicubic["ssim"]) == pytest.approx(ssim(bicubic_sr(hr, lr), hr, 4), abs=1e-6)
    assert float(bicubic["psnr_y"]) == pytest.approx(psnr_y(bicubic_sr(hr, lr), hr, 4), abs=1e-6)
    assert "psnr_y" in capsys.readouterr().out


def test_bad_checkpoint_and_device_errors(tmp_path, photo_dir, capsys):
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"weights": 1}, bogus)
    assert main(["eval", "--ckpt", str(bogus), "--hr-dir", str(photo_dir)]) == 2
    assert "not a pcsr-lightning checkpoint" in capsys.readouterr().err
    assert main(["eval", "--ckpt", str(tmp_path / "missing.ckpt"), "--hr-dir", str(photo_dir)]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_original_network_scale_mismatch(tmp_path, photo_dir, capsys):
    from pcsr_lightning.models import OriginalSR

    config = original_config("carn", 2, rgb_mean=[0, 0, 0], nf=16)
    ckpt = save_checkpoint(tmp_path / "orig.ckpt", OriginalSR(CARN(nf=16, scale=2)), config)
    assert main(["eval", "--ckpt", str(ckpt), "--hr-dir", str(photo_dir), "--scale", "4"]) == 2
    assert "x2 only" in capsys.readouterr().err
    csv_path = tmp_path / "o.csv"
    assert main(["eval", "--ckpt", str(ckpt), "--hr-dir", str(photo_dir), "--scale", "2", "--out", str(csv_path)]) == 1
    rows = list(csv.DictReader(csv_path.open()))
    assert rows[0]["heavy_share"] == ""


def test_checkpoint_refuses_foreign_targets(tmp_path):
    from pcsr_lightning.io.checkpoint import CheckpointError, load_checkpoint

    model = PCSR(CARN(nf=16), [[24, 24], [8]], [8])
    bad = dict(PCSR_CONFIG, _target_="os.system")
    path = save_checkpoint(tmp_path / "evil.ckpt", model, bad)
    with pytest.raises(CheckpointError, match="refusing to build 'os.system'"):
        load_checkpoint(path)


def test_import_official_cli(official_ckpts, tmp_path, capsys):
    from conftest import OFFICIAL

    out = tmp_path / "c.ckpt"
    assert main(["import-official", "--src", str(OFFICIAL / "carn-pcsr-phase1.pth"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "168,970 parameters" in text and "0.6812, 0.3188" in text


def test_demo_trains_then_measures_the_held_out_photos_with_the_eval_loop(tmp_path, capsys):
    from pcsr_lightning.data.samples import sample_split
    from pcsr_lightning.data.sources import sample_photo as photo
    from pcsr_lightning.evaluation.protocol import bicubic_psnr, make_pair

    out = tmp_path / "demo"
    released = tmp_path / "released"  # stands for the released checkpoints: a PCSR model, and an original left out
    save_tiny(released / "tiny-pcsr.safetensors")
    save_tiny(released / "tiny-x4.safetensors", kind="original")
    assert main(["demo", "--profile", "smoke", "--k", "0", "1", "--out", str(out), "--official", str(released),
                 "profile.val_every=100"]) == 0
    rows = {r["method"]: r for r in csv.DictReader((out / "demo.csv").open())}
    assert list(rows) == ["bicubic", "PCSR, all heavy (U_0)", "PCSR routed, k=0", "PCSR routed, k=1"]
    assert sorted(p.stem for p in (out / "held_out").iterdir()) == sorted(sample_split("val"))
    pairs = [make_pair(photo(name), 4) for name in sample_split("val")]
    bicubic = sum(bicubic_psnr(hr, lr, 4) for hr, lr in pairs) / len(pairs)
    assert float(rows["bicubic"]["psnr"]) == pytest.approx(bicubic, abs=0.005)
    assert rows["PCSR, all heavy (U_0)"]["heavy_share"] == "1.000" and rows["bicubic"]["gflops_paper"] == "0.00"
    assert float(rows["PCSR routed, k=1"]["gflops_paper"]) <= float(rows["PCSR routed, k=0"]["gflops_paper"])
    text = capsys.readouterr().out
    assert "held-out photos chelsea, rocket" in text
    # The picture's k: where the trained model's heavy share on the held-out photos is nearest 75/50/25%.
    (line,) = [t for t in text.splitlines() if t.startswith("k for the picture")]
    shares = [float(x) for x in re.findall(r"-> ([0-9.]+)", line)]
    assert len(shares) == 3 and shares == sorted(shares, reverse=True) and all(0 <= x <= 1 for x in shares)
    # One row per held-out photo, 192-pixel panels: bicubic | PCSR | HR | 3 class maps | the released model's.
    picture = Image.open(out / "demo.png")
    assert picture.mode == "RGB" and picture.width >= 7 * 192 and picture.height >= 2 * 192
    # The finished run measured and drawn again without training: the same k, since the same model.
    again = tmp_path / "again"
    assert main(["demo", "--from-run", str(out), "--out", str(again)]) == 0
    text = capsys.readouterr().out
    assert "no training" in text and line in text and (again / "demo.png").is_file() and (again / "demo.csv").is_file()
    assert main(["demo", "--from-run", str(out), "--experiment", "carn_pcsr"]) == 2
    assert "trained fsrcnn_pcsr; pass --experiment fsrcnn_pcsr" in capsys.readouterr().err


def test_demo_of_a_model_for_every_scale_shows_its_largest_validation_scale(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--experiment", "fsrcnn_pcsr_anyscale_cpu", "--profile", "smoke", "--k", "0", "--out",
                 str(out), "profile.steps.stage0=2", "profile.steps.stage=2", "profile.val_every=100",
                 "data.queries=64", "data.val_scales=[2,3]"]) == 0
    text = capsys.readouterr().out
    assert "trained on scales [1, 4]; measured and drawn at x3" in text and "x3 PSNR (dB) on the held-out" in text
    rows = {r["method"]: r for r in csv.DictReader((out / "demo.csv").open())}
    assert float(rows["PCSR routed, k=0"]["psnr"]) > 10


def test_the_console_script_starts_without_the_training_stack():
    """``pcsr`` imports only the module of the command it runs; only ``pcsr demo`` trains, so Lightning
    (seconds to import) and the stages load with no other command (``pcsr fit-fill`` fits in closed form)."""
    code = ("import sys; from pcsr_lightning.apps.cli import COMMANDS, build_parser\n"
            "for name in [n for n in COMMANDS if n != 'demo']:\n"
            "    build_parser([name])\n"
            "build_parser([])\n"
            "print(sorted(m for m in ('lightning', 'pcsr_lightning.training.stages', "
            "'pcsr_lightning.training.pipeline', 'pcsr_lightning.apps.train_app', 'pcsr_lightning.apps.commands.demo') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = ("import sys; from pcsr_lightning.apps.cli import build_parser; build_parser(['upscale']); "
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('pcsr_lightning.apps.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['common', 'upscale']"
