"""Curves compared at equal GFLOPs: interpolation, gaps, the `pcsr compare` command."""

from __future__ import annotations

import re

import pytest

from factories import pcsr_config
from pcsr_lightning.apps.cli import main as pcsr_main
from pcsr_lightning.evaluation.compare import gaps_at_equal_gflops, interpolate, worst_gap, worst_gaps_both_ways
from pcsr_lightning.evaluation.evaluate import SUMMARY_COLUMNS, rows_to_csv
from pcsr_lightning.io.files import write_text


def test_interpolate_by_hand():
    curve = [(2.0, 30.0), (1.0, 28.0), (4.0, 31.0)]  # unsorted on purpose
    assert interpolate(curve, 1.5) == pytest.approx(29.0)
    assert interpolate(curve, 3.0) == pytest.approx(30.5)
    assert interpolate(curve, 4.0) == pytest.approx(31.0)
    assert interpolate(curve, 0.5) is None and interpolate(curve, 4.5) is None
    assert interpolate([(2.0, 30.0)], 2.0) == 30.0


def test_log_ticks_bound_the_range_with_1_2_5_steps():
    from pcsr_lightning.evaluation.plot import Series, draw_plot, log_ticks

    assert log_ticks(5.769, 54.659) == [5.0, 10.0, 20.0, 50.0, 100.0]
    assert log_ticks(0.3, 0.9) == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]
    assert log_ticks(0.1, 0.9) == [0.1, 0.2, 0.5, 1.0]
    assert log_ticks(2.0, 2.0) == [2.0]
    with pytest.raises(ValueError, match="above 0"):
        draw_plot([Series("a", [(0.0, 30.0), (1.0, 31.0)])], "t", log_x=True)


def test_gaps_and_worst_gap():
    rows = gaps_at_equal_gflops([(1.0, 28.0), (3.0, 30.0)], [(2.0, 28.5), (3.0, 30.2), (5.0, 31.0)])
    assert [r["gap_db"] for r in rows[:2]] == [pytest.approx(-0.5), pytest.approx(0.2)]
    assert rows[2]["gap_db"] is None and rows[2]["reference_psnr"] is None
    assert worst_gap(rows) == pytest.approx(-0.5)
    assert worst_gap(rows[2:]) is None
    both = worst_gaps_both_ways([(1.0, 28.0), (3.0, 30.0)], [(2.0, 28.5), (3.0, 30.2), (5.0, 31.0)])
    # at the reference's points: 1.0 is outside the other's range, 3.0 gives 30.2 - 30.0
    assert both["at_other"] == pytest.approx(-0.5) and both["at_reference"] == pytest.approx(0.2)
    assert both["either"] == pytest.approx(-0.5)
    assert worst_gaps_both_ways([(1.0, 28.0)], [(5.0, 31.0)])["either"] is None


def summary(rows):
    return rows_to_csv(SUMMARY_COLUMNS, [dict(zip(("setting", "k", "gflops_paper", "psnr"), r), model="pcsr", images=2,
                                              heavy_share=0.5, gflops_fvcore=None, pct_fvcore=None, pct_paper=None)
                                         for r in rows])


def test_compare_command_writes_table_and_plot(tmp_path, capsys):
    write_text(summary([("k", 0.0, 2.0, 30.0), ("all-light", None, 1.0, 28.0), ("all-heavy", None, 3.0, 31.0)]),
               tmp_path / "a.csv")
    write_text(summary([("k", 0.0, 2.5, 30.3), ("all-light", None, 1.0, 27.9), ("all-heavy", None, 3.0, 31.0)]),
               tmp_path / "b.csv")
    assert pcsr_main(["compare", f"released={tmp_path / 'a.csv'}", f"retrained={tmp_path / 'b.csv'}",
                      "--table", str(tmp_path / "t.md"), "--plot", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    # at b's points: 30.3 vs 30.5 at 2.5 GFLOPs; at a's: 29.5 (b between 27.9 at 1 and 30.3 at 2.5) vs 30 at 2
    assert ("retrained vs released: worst gap at equal GFLOPs -0.500 dB (-0.200 dB at retrained's points, "
            "-0.500 dB at released's)") in out
    assert "+0.000" in (tmp_path / "t.md").read_text() and (tmp_path / "c.png").stat().st_size > 0
    assert pcsr_main(["compare", f"released={tmp_path / 'a.csv'}", f"retrained={tmp_path / 'b.csv'}",
                      "--plot", str(tmp_path / "log.png"), "--log-x"]) == 0
    assert (tmp_path / "log.png").read_bytes() != (tmp_path / "c.png").read_bytes()
    assert pcsr_main(["compare", f"only={tmp_path / 'a.csv'}"]) == 2


SWAP_CFG = pcsr_config("fsrcnn", [[16], [4]], [])


def test_swap_takes_the_named_parts_from_the_donor(tmp_path, capsys):
    import torch

    from pcsr_lightning.apps.cli import main
    from pcsr_lightning.io.checkpoint import build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    a = save_checkpoint(tmp_path / "a.ckpt", build_model(SWAP_CFG), SWAP_CFG)
    b = save_checkpoint(tmp_path / "b.ckpt", build_model(SWAP_CFG), SWAP_CFG)
    assert main(["swap", str(a), str(b), "--parts", "classifier", "--out", str(tmp_path / "ab.ckpt")]) == 0
    sa, sb = (load_checkpoint(p).model.state_dict() for p in (a, b))
    swapped = load_checkpoint(tmp_path / "ab.ckpt")
    assert swapped.meta["swapped"]["parts"] == ["classifier"]
    for key, value in swapped.model.state_dict().items():
        expected = sb[key] if key.startswith("classifier.") else sa[key]
        assert torch.equal(value, expected), key
    assert not torch.equal(sa["classifier.layers.0.weight"], sb["classifier.layers.0.weight"])

    wider = {**SWAP_CFG, "upsampler_hidden": [[16], [6]]}
    c = save_checkpoint(tmp_path / "c.ckpt", build_model(wider), wider)
    assert main(["swap", str(a), str(c), "--parts", "upsamplers.1", "--out", str(tmp_path / "bad.ckpt")]) == 2
    assert re.search(r"upsamplers\.1.*do not fit", capsys.readouterr().err)
    assert main(["swap", str(a), str(b), "--parts", "upsampler", "--out", str(tmp_path / "bad.ckpt")]) == 2
    assert "no part 'upsampler' in this PCSR" in capsys.readouterr().err
    assert not (tmp_path / "bad.ckpt").exists()
