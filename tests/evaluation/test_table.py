"""pcsr table: rows from checkpoints and manifests, k picked against the original, files that parse."""

import csv
import json

import pytest
import torch
from PIL import Image

from conftest import sample_photo
from factories import original_config, pcsr_config
from pcsr_lightning.apps.cli import main
from pcsr_lightning.evaluation.paper_table import pick_k
from pcsr_lightning.io.checkpoint import save_checkpoint
from pcsr_lightning.models import FSRCNN, PCSR, OriginalSR

PCSR_CFG = pcsr_config("fsrcnn", [[16], [4]], [])
ORIG_CFG = original_config("fsrcnn", 4)


@pytest.fixture
def runs(tmp_path):
    torch.manual_seed(0)
    pcsr = save_checkpoint(tmp_path / "p.ckpt", PCSR(FSRCNN(8, 4, 1), [[16], [4]], []), PCSR_CFG)
    orig = save_checkpoint(tmp_path / "o.ckpt", OriginalSR(FSRCNN(8, 4, 1, scale=4)), ORIG_CFG)
    run = tmp_path / "runs" / "0"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "experiment": "fsrcnn_pcsr", "backbone": "fsrcnn", "kind": "pcsr", "final_checkpoint": str(pcsr),
        "stages": [{"name": "stage0", "status": "done", "checkpoint": str(pcsr), "metrics": {}}]}))
    hr = tmp_path / "hr"
    hr.mkdir()
    img = (sample_photo("chelsea")[:, :140, :140] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).save(hr / "cat.png")
    return tmp_path, orig, hr


def test_table_from_manifest_and_checkpoint(runs, capsys):
    tmp_path, orig, hr = runs
    out = tmp_path / "table"
    args = ["table", "--runs", str(tmp_path / "runs"), "--row", f"FSRCNN={orig}", "--dataset", f"Test2K={hr}",
            "--k", "0", "3", "--out-dir", str(out)]
    assert main(args) == 0
    images = len(list(hr.iterdir()))
    err = capsys.readouterr().err  # progress over every image of every row, as it goes
    assert f"table 1/{2 * images} images" in err and f"table {2 * images}/{2 * images} images" in err
    cells = {r["row"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert set(cells) == {"FSRCNN", "FSRCNN-PCSR"}
    assert float(cells["FSRCNN-PCSR"]["paper_psnr"]) == 25.61 and cells["FSRCNN"]["pct_paper"] == ""
    assert float(cells["FSRCNN-PCSR"]["k"]) in (0.0, 3.0)
    assert float(cells["FSRCNN-PCSR"]["pct_paper"]) > 0
    md = (out / "table.md").read_text()
    assert md.startswith("| model | Test2K k | Test2K PSNR") and "| FSRCNN-PCSR |" in md and "25.61 / 8.5 (19%)" in md
    with Image.open(out / "curve_Test2K.png") as img:
        assert img.size == (1200, 720)


def cell(setting, k, psnr, gflops):
    return {"model": "original" if setting == "original" else "pcsr", "setting": setting, "k": k, "psnr": psnr,
            "gflops_paper": gflops}


# A k sweep, the original and the ends: all-light is the cheapest and reaches most targets, but it is no k.
SWEEP = [cell("k", -1.0, 30.0, 9.0), cell("k", 0.0, 29.9, 7.0), cell("k", 1.0, 29.5, 5.0), cell("k", 2.0, 29.0, 3.0),
         cell("all-light", None, 29.9, 1.0), cell("all-heavy", None, 30.1, 11.0), cell("original", None, 30.0, 10.0)]


def test_pick_k_takes_the_cheapest_k_that_reaches_the_target():
    assert pick_k(SWEEP, 29.8)["k"] == 0.0  # k=-1 and k=0 reach 29.8: k=0 costs less
    assert pick_k(SWEEP, 29.5)["k"] == 1.0  # equal to the target counts as reached
    assert pick_k(SWEEP, 20.0)["k"] == 2.0


def test_pick_k_without_a_k_that_reaches_the_target_takes_the_best_psnr():
    assert pick_k(SWEEP, 31.0)["k"] == -1.0
    shuffled = [SWEEP[2], SWEEP[0], SWEEP[3], SWEEP[1]]
    assert pick_k(shuffled, 31.0)["k"] == -1.0


def test_pick_k_with_one_k_or_no_target_takes_it():
    single = [cell("k", 0.5, 20.0, 1.0), cell("original", None, 30.0, 10.0)]
    assert pick_k(single, 29.0)["k"] == 0.5  # a fixed k is reported even below the target
    assert pick_k(SWEEP, None)["k"] == -1.0  # no original to aim at: the first k swept
    with pytest.raises(ValueError, match="no k rows"):
        pick_k([cell("original", None, 30.0, 10.0)], 29.0)


def test_table_bad_rows(runs, capsys):
    tmp_path, orig, _ = runs
    assert main(["table", "--row", f"EDSR={orig}"]) == 2
    assert "NAME one of" in capsys.readouterr().err
    assert main(["table", "--row", f"CARN-PCSR={tmp_path / 'runs' / '0'}"]) == 2
    assert "is a FSRCNN-PCSR run" in capsys.readouterr().err
    assert main(["table"]) == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_wandb_gets_table_and_image(monkeypatch, tmp_path):
    import sys
    import types

    logged = {}
    fake = types.SimpleNamespace(Table=lambda columns, data: ("table", columns, data),
                                 Image=lambda path: ("image", path))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    from pcsr_lightning.evaluation.wandb_log import log_results

    run = types.SimpleNamespace(log=logged.update)
    log_results(run, "table", ["row", "psnr"], [{"row": "CARN", "psnr": 26.0}], {"curve": "c.png"})
    assert logged == {"table/table": ("table", ["row", "psnr"], [["CARN", 26.0]]), "table/curve": ("image", "c.png")}
