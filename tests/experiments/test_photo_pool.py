"""experiments/pool/photo_pool.py on a fake package tree of generated textures (no apt, no dpkg)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from experiment_scripts import load_script

pp = load_script("pool/photo_pool")


def texture(seed: int, w: int, h: int) -> np.ndarray:
    """A photo-like RGB texture: smooth random fields at a few scales plus pixel noise."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 80.0), (16, 40.0), (64, 20.0)):
        coarse = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
        out += amp / 255 * np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    out += rng.integers(-6, 7, out.shape, dtype=np.int8)
    return np.clip(out + 40, 0, 255).astype(np.uint8)


def save(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, compress_level=1)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Two fake packages: pkg-a has copies, a resized copy, a symlink, a small, a flat and a vector file."""
    root = tmp_path_factory.mktemp("tree")
    a = root / "pkg-a" / "usr" / "share" / "backgrounds"
    one = texture(1, 1200, 1100)
    save(one, a / "one.png")
    save(one, a / "one-copy.png")                                        # exact duplicate
    os.symlink("one.png", a / "one-link.png")                            # the same file
    two = texture(2, 1320, 1200)
    save(two, a / "two.png")
    small_two = np.asarray(Image.fromarray(two).resize((1140, 1036), Image.Resampling.LANCZOS))
    save(small_two, a / "two-1140.jpg")                                  # near duplicate (resized, JPEG)
    save(texture(3, 1000, 900), a / "small.png")                         # below the size rule
    flat = np.zeros((1100, 1200, 3), np.uint8)
    flat[:, 600:] = (30, 90, 200)
    save(flat, a / "flat.png")                                           # vector-like art
    (a / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    b = root / "pkg-b" / "usr" / "share" / "wallpapers"
    save(texture(4, 1100, 1200), b / "x" / "photo.png")                  # two files named photo.png
    save(texture(5, 1100, 1200), b / "y" / "photo.png")
    return root


def cands(tree: Path, pkg: str) -> list:
    files = sorted(p for p in (tree / pkg).rglob("*") if p.is_file() or p.is_symlink())
    return [pp.Candidate(pkg, "1.0", p, "/" + p.relative_to(tree / pkg).as_posix(), "CC0") for p in files]


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "pool.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("pool") / "out"
    return out, pp.build_pool(cands(tree, "pkg-a") + cands(tree, "pkg-b"), out)


def test_filters_and_dedup(built):
    out, result = built
    a = result.counts["pkg-a"]
    assert a == {"files": 8, "vector": 1, "same_file": 1, "artwork": 0, "unreadable": 0, "small": 1,
                 "transparent": 0, "exact_dup": 1, "near_dup": 1, "flat": 1, "kept": 2}
    kept = {r["source"] for r in rows(out)}
    assert kept == {"/usr/share/backgrounds/one.png", "/usr/share/backgrounds/two.png",
                    "/usr/share/wallpapers/x/photo.png", "/usr/share/wallpapers/y/photo.png"}
    reasons = {(s["source"].rsplit("/", 1)[1], s["reason"], s["detail"].rsplit("/", 1)[-1]) for s in result.skipped}
    assert ("one-copy.png", "exact_dup", "one.png") in reasons
    assert ("two-1140.jpg", "near_dup", "two.png") in reasons      # the largest version is kept
    assert ("small.png", "small", "1000x900") in reasons


def test_outputs_resized_named_and_listed(built):
    out, result = built
    by_source = {r["source"]: r for r in rows(out)}
    two = by_source["/usr/share/backgrounds/two.png"]
    assert (two["original_size"], two["output_size"]) == ("1320x1200", "1320x1200")   # never upscaled
    names = sorted(r["file"] for r in result.rows)
    assert names[:2] == ["pkg-a-one.png", "pkg-a-two.png"]
    assert all(n.startswith("pkg-b-photo-") and len(n) == len("pkg-b-photo-12345678.png") for n in names[2:])
    for r in result.rows:
        with Image.open(out / r["split"] / r["file"]) as img:
            assert img.mode == "RGB" and f"{img.width}x{img.height}" == r["output_size"]
        assert r["split"] == pp.split_of(r["content_hash"]) and r["licence"] == "CC0" and r["version"] == "1.0"
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    images = [f"{r['split']}/{r['file']}" for r in result.rows]
    assert files == sorted(["pool.csv", "pool.json", "skipped.csv", *images])


def test_resize_target(tree, tmp_path):
    assert pp.output_size((5120, 2880)) == (2040, 1148)
    assert pp.output_size((1440, 2560)) == (1148, 2040)
    assert pp.output_size((1200, 1100)) == (1200, 1100)
    result = pp.build_pool(cands(tree, "pkg-b"), tmp_path / "out", long_side=1000)
    assert {r["output_size"] for r in result.rows} == {"917x1000"}


def test_size_rule(tree, tmp_path):
    assert pp.MIN_SIDE == 1024
    result = pp.build_pool(cands(tree, "pkg-b"), tmp_path / "at", min_side=1100)   # 1100x1200: short side 1100
    assert result.counts["pkg-b"]["kept"] == 2
    with pytest.raises(pp.PoolError, match="nothing usable"):
        pp.build_pool(cands(tree, "pkg-b"), tmp_path / "above", min_side=1101)


def test_split_rule_deterministic_and_stable(tree, tmp_path, built):
    assert [pp.split_of(str(i)) for i in range(50)] == [pp.split_of(str(i)) for i in range(50)]
    shares = [pp.split_of(f"key{i}") for i in range(2000)]
    assert abs(shares.count("train") / 2000 - 0.8) < 0.04 and abs(shares.count("val") / 2000 - 0.1) < 0.03
    _, both = built
    alone = pp.build_pool(cands(tree, "pkg-a"), tmp_path / "a")
    split_both = {r["content_hash"]: r["split"] for r in both.rows}
    assert all(split_both[r["content_hash"]] == r["split"] for r in alone.rows)   # adding pkg-b moved nothing
    scene = pp.Candidate("pkg-a", "1", Path("x"), "/x", "CC0", scene="pkg-a/Theme")
    photo = pp.Photo(scene, (1, 1), "0" * 64, 0, 0)
    assert pp.split_of(photo.cand.scene) == pp.split_of("pkg-a/Theme")


def test_reproducible(tree, tmp_path, built):
    out, _ = built
    again = tmp_path / "again"
    pp.build_pool(cands(tree, "pkg-b") + cands(tree, "pkg-a"), again)   # order of the input does not matter
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()}
    assert first == second


@pytest.mark.parametrize("pkg", ["mate-backgrounds", "lomiri-wallpapers", "lomiri-wallpapers-20.04"])
def test_reserved_packages_refused(pkg, tmp_path, capsys):
    with pytest.raises(pp.PoolError, match="reserved for independent evaluation"):
        pp.check_names(["lxqt-themes", pkg])
    c = pp.Candidate(pkg, "1", tmp_path / "x.png", "/x.png", "GPL")
    with pytest.raises(pp.PoolError, match="reserved"):
        pp.build_pool([c], tmp_path / "out")
    assert pp.main([str(tmp_path / "out"), "--packages", "lxqt-themes", pkg]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reserved" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_out_refused(tree, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(pp.PoolError, match="not empty"):
        pp.build_pool(cands(tree, "pkg-b"), out)
    assert pp.main([str(out), "--packages", "scikit-image"]) == 2
    assert "not empty" in capsys.readouterr().err
    stale = out / "train" / "stale.png"
    stale.parent.mkdir()
    stale.write_bytes(b"")
    result = pp.build_pool(cands(tree, "pkg-b"), out, force=True)
    assert (out / "something").exists() and len(result.rows) == 2     # --force replaces only the pool's files
    assert not stale.exists()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert pp.main([str(afile), "--packages", "scikit-image"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_nothing_usable(tree, tmp_path):
    with pytest.raises(pp.PoolError, match="nothing usable"):
        pp.build_pool(cands(tree, "pkg-a"), tmp_path / "out", min_side=5000)
    assert not (tmp_path / "out").exists()


def test_package_errors(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(pp, "installed_version", lambda pkg: None)
    monkeypatch.setattr(pp, "known_to_apt", lambda pkg: pkg == "lxqt-themes")
    with pytest.raises(pp.PoolError, match="unknown package.*no-such-wallpapers"):
        pp.prepare_packages(["lxqt-themes", "no-such-wallpapers"], install=False, log=print)
    with pytest.raises(pp.PoolError, match="not installed: lxqt-themes.*--install"):
        pp.prepare_packages(["lxqt-themes"], install=False, log=print)
    assert pp.main([str(tmp_path / "out"), "--packages", "no-such-wallpapers"]) == 2
    assert capsys.readouterr().err.startswith("photo_pool: error: unknown package")


def test_licences(tmp_path):
    text = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2013, Someone
License: GPL-2+

Files: data/themes/maldives/*
Copyright: 2013, Theme Author
License: CC-BY-SA-3.0

Files: data/themes/maldives/background.jpg
Copyright: 2008, Photographer
License: CC-BY-3.0

License: GPL-2+
 The text.
"""
    info = pp.parse_copyright(text)
    assert info.licences == ["GPL-2+", "CC-BY-SA-3.0", "CC-BY-3.0"]
    assert pp.licence_for("/usr/share/sddm/themes/maldives/background.jpg", info) == (
        "CC-BY-3.0", "copyright:files", "2008, Photographer")
    assert pp.licence_for("/usr/share/sddm/themes/maldives/other.png", info)[0] == "CC-BY-SA-3.0"
    assert pp.licence_for("/usr/share/elsewhere/x.png", info)[0] == "GPL-2+"
    line = "This package is under the GNU GPL v2."
    assert pp.parse_copyright(f"Upstream: somewhere\n{line}\n").licences == [line]
    assert pp.parse_copyright(f"Copyright and licenses:\n\n{line}\n").licences == [line]
    theme = tmp_path / "usr/share/wallpapers/Path"
    (theme / "contents/images").mkdir(parents=True)
    (theme / "metadata.json").write_text('{"KPlugin": {"License": "LGPLv3", "Authors": [{"Name": "R. S."}]}}')
    assert pp.kde_theme_licence(theme / "contents/images/2560x1600.jpg") == ("LGPLv3", "R. S.")
    c = pp.Candidate("plasma", "1", theme / "contents/images_dark/2560x1600.jpg",
                     "/usr/share/wallpapers/Path/contents/images_dark/2560x1600.jpg", "LGPLv3")
    assert pp.stem_of(c) == "Path-dark"
    puzzle = tmp_path / "usr/share/palapeli/collection"
    puzzle.mkdir(parents=True)
    (puzzle / "bee.desktop").write_text("[Desktop Entry]\nX-KDE-PluginInfo-Author=J. S.\n"
                                        "X-KDE-PluginInfo-License=Public Domain\n")
    assert pp.desktop_licence(puzzle / "bee.jpg") == ("Public Domain", "J. S.")
    assert pp.desktop_licence(puzzle / "other.jpg") is None
