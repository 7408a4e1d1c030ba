"""pcsr table: rows from checkpoints and manifests, k picked against the original, files that parse."""

import csv
import json

import pytest
import torch
from PIL import Image

from conftest import sample_photo
from pcsr_lightning.io.checkpoint import save_checkpoint
from pcsr_lightning.apps.cli import main
from pcsr_lightning.models import FSRCNN, PCSR, OriginalSR

PCSR_CFG = {"_target_": "pcsr_lightning.models.PCSR",
            "backbone": {"_target_": "pcsr_lightning.models.FSRCNN", "d": 8, "s": 4, "m": 1, "scale": None},
            "upsampler_hidden": [[16], [4]], "classifier_hidden": []}
ORIG_CFG = {"_target_": "pcsr_lightning.models.OriginalSR",
            "network": {"_target_": "pcsr_lightning.models.FSRCNN", "d": 8, "s": 4, "m": 1, "scale": 4}}


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
    cells = {r["row"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert set(cells) == {"FSRCNN", "FSRCNN-PCSR"}
    assert float(cells["FSRCNN-PCSR"]["paper_psnr"]) == 25.61 and cells["FSRCNN"]["pct_paper"] == ""
    assert float(cells["FSRCNN-PCSR"]["k"]) in (0.0, 3.0)
    assert float(cells["FSRCNN-PCSR"]["pct_paper"]) > 0
    md = (out / "table.md").read_text()
    assert md.startswith("| model | Test2K k | Test2K PSNR") and "| FSRCNN-PCSR |" in md and "25.61 / 8.5 (19%)" in md
    with Image.open(out / "curve_Test2K.png") as img:
        assert img.size == (1200, 720)


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
