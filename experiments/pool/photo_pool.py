"""An offline DIV2K-like photo pool built from Debian packages that ship photos and scikit-image's bundled ones.

Usage (as root, for --install):
    python experiments/pool/photo_pool.py OUT [--packages PKG ...] [--install] [--force]

Discovery (``dpkg -L``, ``/usr/share/doc/PKG/copyright``, apt) is kept apart from processing
(``build_pool``), which takes a list of ``Candidate`` files with their licences, so that it can be driven
on any file tree. The rules, in the order they are applied (each one is counted per package):

1. ``vector``: .svg / .svgz / .eps / .ai files are skipped (only .jpg .jpeg .png .webp are read).
2. ``same_file``: a symlink to a file also listed (KDE's per-resolution symlinks): the target is taken.
3. ``artwork``: known non-photographic art in the default packages (``ARTWORK``, by path; checked by eye);
   ``--keep-artwork`` turns this list off.
4. ``unreadable``; ``small``: the short side is below ``--min-side`` (1024 px); ``transparent``: more than
   0.1 % of the pixels are not opaque (photos have none; the alpha channel of the others is dropped).
5. ``exact_dup``: the same decoded RGB pixels (sha256 of size + pixels) as another file: the one with the
   shortest path is kept (then the first by name; files are taken by package, path length, path).
6. ``flat``: after the resize (below), at least ``--flat-max`` (80 %) of the pixels have a 4-neighbour grey
   Laplacian below 0.5 levels: large perfectly flat areas that a camera's noise never makes (vector art).
   It comes before 7 because a difference hash is unstable on flat images (unrelated ones come close).
7. ``near_dup``: a 16x16 grey difference hash (of the whole frame, or of its centre square) within
   ``--near-bits`` (20 of 256) of a larger image: the same wallpaper at another resolution / aspect ratio;
   the largest version is kept.

Kept photos are turned upright (EXIF), converted to RGB (grey repeated; 16-bit scaled to 8), resized with
LANCZOS so that the long side is ``--long-side`` (2040 px, DIV2K's; never upscaled) and written as PNG
named ``<package>-<stem>.png`` (``-<hash8>`` added to names that collide). The split is
``sha256(key) mod 100``: < 80 train, 80-89 val, >= 90 report, where the key is the content hash, or a
scene name where one scene comes in several files (a KDE wallpaper theme, scikit-image's stereo pair), so
a photo's split does not move when packages are added. OUT/pool.csv and OUT/pool.json list the photos,
OUT/skipped.csv every file left out and why. Same packages and versions give byte-identical outputs.

mate-backgrounds and the lomiri-wallpapers packages are reserved for an independent evaluation and refused.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Checked on 2026-12-02 and 2026-12-04 (apt-cache search, contact sheets of every >= 1024 px image; see
# photo_pool.md for every package looked at): these six Debian packages ship photographs; gnome-backgrounds,
# ukui-wallpapers, desktop-base, sway-backgrounds, xfdesktop4-data, breeze, the debian-edu-artwork and the
# other sddm-theme packages ship renders and vector art only.
DEFAULT_PACKAGES = ("plasma-workspace-wallpapers", "lxqt-themes", "sddm-theme-maldives", "tuxtype-data",
                    "palapeli-data", "digikam-data", "scikit-image")
RESERVED_PREFIXES = ("mate-backgrounds", "lomiri-wallpapers")
SKIMAGE = "scikit-image"
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
VECTOR_SUFFIXES = (".svg", ".svgz", ".eps", ".ai")
MIN_SIDE = 1024
LONG_SIDE = 2040
NEAR_BITS = 20
FLAT_MAX = 0.80
FLAT_LEVEL = 0.5
MAX_TRANSPARENT = 0.001
SPLITS = ((80, "train"), (90, "val"), (100, "report"))
STAGES = ("files", "vector", "same_file", "artwork", "unreadable", "small", "transparent", "exact_dup", "flat",
          "near_dup", "kept")
COLUMNS = ("file", "split", "package", "version", "source", "licence", "licence_source", "copyright",
           "package_licences", "original_size", "output_size", "content_hash", "dhash")
SKIPPED_COLUMNS = ("package", "version", "source", "reason", "detail")
OWNED = ("train", "val", "report", "pool.csv", "pool.json", "skipped.csv")

# Known non-photographic art in the default packages (globs on the installed path), sorted out by eye.
ARTWORK: dict[str, tuple[str, ...]] = {
    "plasma-workspace-wallpapers": tuple(
        f"/usr/share/wallpapers/{theme}/*" for theme in (
            "Altai", "Autumn", "Canopee", "Cascade", "Cluster", "Elarun", "Flow", "FlyingKonqui", "Honeywave",
            "IceCold", "Kay", "Kokkini", "MilkyWay", "Opal", "PastelHills", "Patak", "SafeLanding", "Shell",
            "Volna")),
    "lxqt-themes": tuple(
        f"/usr/share/lxqt/wallpapers/{name}" for name in (
            "kde-plasma.png", "lxqt-origami-green.png", "origami-*.png", "plasma-logo-*.png", "plasma_arch.png",
            "simple_blue_widescreen.png", "triangles*.png", "waves-*")),
    "sddm-theme-maldives": ("/usr/share/sddm/themes/maldives/maldives.jpg",),   # a screenshot of the theme
    # an empty photo-album page (brown card, white inside) of a web-gallery theme
    "digikam-data": ("/usr/share/digikam/themes/html5responsive/resources/images/BrownCard/brownCardAlbum.jpg",),
}

# scikit-image's bundled photos (the ones conf/data/samples.yaml uses), with the licence its docstrings give.
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut.png": "public domain (NASA)",
    "brick.png": "CC0 (CC0Textures)",
    "camera.png": "CC0 (Lav Varshney)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "grass.png": "CC0 (CC0Textures)",
    "gravel.png": "CC0 (CC0Textures)",
    "hubble_deep_field.jpg": "public domain (NASA)",
    "ihc.png": "no known copyright restrictions",
    "motorcycle_left.png": "not stated (Middlebury 2014 stereo benchmark)",
    "motorcycle_right.png": "not stated (Middlebury 2014 stereo benchmark)",
    "retina.jpg": "CC0 (Wikimedia Commons)",
    "rocket.jpg": "public domain (SpaceX)",
}
SKIMAGE_SCENES = {"motorcycle_left.png": "scikit-image/motorcycle", "motorcycle_right.png": "scikit-image/motorcycle"}

KDE_THEME = re.compile(r"^(?P<root>.*/wallpapers/(?P<theme>[^/]+))/contents/(?P<kind>images[^/]*)/[^/]+$")
RESOLUTION_STEM = re.compile(r"^\d+x\d+$")
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class PoolError(Exception):
    """A failure reported as one line with exit status 2."""


@dataclass(frozen=True)
class Candidate:
    """One file offered to the pool: where to read it and what to record about it."""

    package: str
    version: str
    path: Path
    source: str
    licence: str
    licence_source: str = ""
    copyright: str = ""
    package_licences: str = ""
    scene: str = ""


@dataclass
class Copyright:
    """A parsed /usr/share/doc/PKG/copyright: DEP-5 Files stanzas and every licence named."""

    stanzas: list[tuple[tuple[str, ...], str, str]] = field(default_factory=list)   # (patterns, copyright, licence)
    licences: list[str] = field(default_factory=list)


@dataclass
class Photo:
    """A candidate that passed the cheap checks, with its hashes."""

    cand: Candidate
    size: tuple[int, int]
    content_hash: str
    dhash: int
    dhash_centre: int


@dataclass
class PoolResult:
    rows: list[dict[str, str]]
    skipped: list[dict[str, str]]
    counts: dict[str, dict[str, int]]


# ---------------------------------------------------------------------------------------------- licences


def parse_copyright(text: str) -> Copyright:
    """DEP-5 stanzas (Files / Copyright / License, first lines) and the licences named, in order; for a
    file in another format, the first line that names one (GPL, public domain, "licensed under"), else
    the first that mentions licences."""
    info = Copyright()
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = [value.strip()]
        licence = fields.get("license", [""])[0]
        if licence and licence not in info.licences:
            info.licences.append(licence)
        if "files" in fields and licence:
            patterns = tuple(p for line in fields["files"] for p in line.split())
            holder = next((c for c in fields.get("copyright", []) if c), "")
            info.stanzas.append((patterns, holder, licence))
    if not info.licences:   # a line that names a licence, else one that mentions licences ("Licenses:")
        lines = [ln.strip() for ln in text.splitlines()]
        naming = r"GPL|public domain|licen[cs]ed under|creative commons"
        line = next((ln for ln in lines if re.search(naming, ln, re.I)),
                    next((ln for ln in lines if re.search(r"licen[cs]e", ln, re.I)), ""))
        if line:
            info.licences.append(line[:200])
    return info


def _pattern_matches(pattern: str, path: str) -> bool:
    """A DEP-5 pattern (a path in the source tree) against an installed path: '*' matches all, else the
    pattern's last components (file name and at least its parent when it has one) match the path's."""
    if pattern == "*":
        return True
    pat = pattern.strip("/").split("/")
    parts = path.strip("/").split("/")
    need = min(len(pat), 2)
    for k in range(len(pat), need - 1, -1):
        tail = pat[-k:]
        if len(parts) >= k and all(fnmatch.fnmatchcase(p, q) for p, q in zip(parts[-k:], tail, strict=True)):
            return True
    return False


def licence_for(path: str, info: Copyright) -> tuple[str, str, str]:
    """(licence, where it came from, copyright holder) of one installed file: the last matching DEP-5
    stanza (the format's rule), else every licence of the package."""
    match = None
    for patterns, holder, licence in info.stanzas:
        if any(_pattern_matches(p, path) for p in patterns):
            match = (licence, holder)
    if match is not None:
        return match[0], "copyright:files", match[1]
    return "; ".join(info.licences) or "unknown", "copyright", ""


def kde_theme_licence(path: Path) -> tuple[str, str] | None:
    """(licence, authors) from a KDE wallpaper theme's metadata.json / metadata.desktop, if the file is one."""
    m = KDE_THEME.match(path.as_posix())
    if not m:
        return None
    root = Path(m["root"])
    meta = root / "metadata.json"
    if meta.is_file():
        try:
            plugin = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
        except (OSError, ValueError):
            plugin = {}
        licence = str(plugin.get("License", "")).strip()
        authors = ", ".join(str(a.get("Name", "")) for a in plugin.get("Authors", []) if isinstance(a, dict))
        if licence:
            return licence, authors
    desktop = root / "metadata.desktop"
    if desktop.is_file():
        values = dict(ln.split("=", 1) for ln in desktop.read_text(encoding="utf-8", errors="replace").splitlines()
                      if "=" in ln)
        licence = values.get("X-KDE-PluginInfo-License", "").strip()
        if licence:
            return licence, values.get("X-KDE-PluginInfo-Author", "").strip()
    return None


def desktop_licence(path: Path) -> tuple[str, str] | None:
    """(licence, author) from a ``<stem>.desktop`` next to the image (palapeli's puzzles), if it names one."""
    desktop = path.with_suffix(".desktop")
    if not desktop.is_file():
        return None
    values = dict(ln.split("=", 1) for ln in desktop.read_text(encoding="utf-8", errors="replace").splitlines()
                  if "=" in ln)
    licence = values.get("X-KDE-PluginInfo-License", "").strip()
    return (licence, values.get("X-KDE-PluginInfo-Author", "").strip()) if licence else None


# --------------------------------------------------------------------------------------------- discovery


def check_names(packages: Sequence[str]) -> None:
    """Refuse the reserved packages and malformed names (before anything is run)."""
    for pkg in packages:
        if any(pkg == p or pkg.startswith(p + "-") for p in RESERVED_PREFIXES):
            raise PoolError(f"{pkg} is reserved for independent evaluation and never goes into the pool")
        if pkg != SKIMAGE and not PACKAGE_NAME.match(pkg):
            raise PoolError(f"not a Debian package name: {pkg!r}")


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise PoolError(f"cannot run {cmd[0]}: {exc.strerror}") from None


def installed_version(pkg: str) -> str | None:
    """The installed version of a Debian package, or None."""
    res = _run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Version}", pkg])
    if res.returncode != 0:
        return None
    status, _, version = res.stdout.partition("\t")
    return version.strip() if status.startswith("ii") else None


def known_to_apt(pkg: str) -> bool:
    res = _run(["apt-cache", "show", "--no-all-versions", pkg])
    return res.returncode == 0 and bool(res.stdout.strip())


def skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    data = Path(spec.origin).parent / "data"
    return data if data.is_dir() else None


def prepare_packages(packages: Sequence[str], install: bool, log: Callable[[str], None]) -> dict[str, str]:
    """{package: version}: every package known and installed (installed first with --install)."""
    check_names(packages)
    debs = [p for p in packages if p != SKIMAGE]
    versions: dict[str, str] = {}
    if SKIMAGE in packages:
        if skimage_data_dir() is None:
            raise PoolError("scikit-image is not installed in this Python (pip install scikit-image)")
        versions[SKIMAGE] = importlib.metadata.version("scikit-image")
    missing = [p for p in debs if installed_version(p) is None]
    unknown = [p for p in missing if not known_to_apt(p)]
    if unknown:
        raise PoolError(f"unknown package(s): {' '.join(unknown)} (not in apt's lists; apt-get update?)")
    if missing and not install:
        raise PoolError(f"not installed: {' '.join(missing)} (run with --install, as root)")
    if missing:
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:
            res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                                 stdout=sys.stderr, stderr=sys.stderr, env=env, check=False)
        except OSError as exc:
            raise PoolError(f"cannot run apt-get: {exc.strerror}") from None
        if res.returncode != 0:
            raise PoolError(f"apt-get install failed (exit {res.returncode}) for: {' '.join(missing)}")
    for pkg in debs:
        version = installed_version(pkg)
        if version is None:
            raise PoolError(f"{pkg} is still not installed after apt-get install")
        versions[pkg] = version
    return versions


def package_candidates(pkg: str, version: str) -> list[Candidate]:
    """Every raster or vector image file that ``dpkg -L`` lists for a package, with its licence."""
    res = _run(["dpkg", "-L", pkg])
    if res.returncode != 0:
        raise PoolError(f"dpkg -L {pkg} failed: {res.stderr.strip().splitlines()[0] if res.stderr else ''}")
    copyright_file = Path("/usr/share/doc") / pkg / "copyright"
    try:
        info = parse_copyright(copyright_file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        info = Copyright()
    package_licences = "; ".join(info.licences) or "unknown"
    out = []
    for line in sorted(set(res.stdout.splitlines())):
        path = Path(line.strip())
        if path.suffix.lower() not in RASTER_SUFFIXES + VECTOR_SUFFIXES or not path.is_file():
            continue
        theme = kde_theme_licence(path)
        sibling = desktop_licence(path) if theme is None else None
        if theme is not None:
            licence, source, holder = theme[0], "theme-metadata", theme[1]
        elif sibling is not None:
            licence, source, holder = sibling[0], "desktop-file", sibling[1]
        else:
            licence, source, holder = licence_for(path.as_posix(), info)
        m = KDE_THEME.match(path.as_posix())
        scene = f"{pkg}/{m['theme']}" if m else ""
        out.append(Candidate(pkg, version, path, path.as_posix(), licence, source, holder, package_licences, scene))
    return out


def skimage_candidates(version: str) -> list[Candidate]:
    data = skimage_data_dir()
    if data is None:
        raise PoolError("scikit-image is not installed in this Python")
    return [Candidate(SKIMAGE, version, data / name, f"skimage/data/{name}", licence, "docstring", "",
                      "see skimage.data docstrings", SKIMAGE_SCENES.get(name, ""))
            for name, licence in sorted(SKIMAGE_PHOTOS.items()) if (data / name).is_file()]


def discover(packages: Sequence[str], install: bool, log: Callable[[str], None]) -> list[Candidate]:
    versions = prepare_packages(packages, install, log)
    cands: list[Candidate] = []
    for pkg in sorted(versions):
        cands += skimage_candidates(versions[pkg]) if pkg == SKIMAGE else package_candidates(pkg, versions[pkg])
    return cands


# -------------------------------------------------------------------------------------------- processing


def to_rgb(img: Image.Image) -> tuple[np.ndarray, float]:
    """(H,W,3) uint8 of an image turned upright, and the fraction of its pixels that are not opaque."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float64)
        img = Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    transparent = 0.0
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        transparent = float(np.mean(np.asarray(rgba)[..., 3] < 255))
        img = rgba
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8)), transparent


def content_hash(arr: np.ndarray) -> str:
    h = hashlib.sha256(f"{arr.shape[1]}x{arr.shape[0]}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def difference_hash(arr: np.ndarray, centre: bool = False) -> int:
    """256-bit difference hash: the grey image (or its centre square) averaged to 17x16, left < right."""
    grey = Image.fromarray(arr).convert("L")
    if centre:
        w, h = grey.size
        s = min(w, h)
        grey = grey.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    small = np.asarray(grey.resize((17, 16), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def output_size(size: tuple[int, int], long_side: int = LONG_SIDE) -> tuple[int, int]:
    """(w, h) with the long side ``long_side``, aspect kept; never larger than the input."""
    w, h = size
    if max(w, h) <= long_side:
        return w, h
    scale = long_side / max(w, h)
    return (long_side, max(1, round(h * scale))) if w >= h else (max(1, round(w * scale)), long_side)


def resize(arr: np.ndarray, long_side: int = LONG_SIDE) -> np.ndarray:
    size = output_size((arr.shape[1], arr.shape[0]), long_side)
    if size == (arr.shape[1], arr.shape[0]):
        return arr
    return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))


def flat_fraction(arr: np.ndarray) -> float:
    """The fraction of inner pixels whose 4-neighbour grey Laplacian is below FLAT_LEVEL grey levels."""
    g = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])
    return float(np.mean(lap < FLAT_LEVEL)) if lap.size else 1.0


def split_of(key: str) -> str:
    """train / val / report from sha256(key) mod 100 (< 80, < 90, else)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 100
    return next(name for limit, name in SPLITS if bucket < limit)


def stem_of(cand: Candidate) -> str:
    """The file's own name, or the KDE theme's (``Path``, ``Flow-dark``) where the file is named by size."""
    stem = Path(cand.source).stem
    m = KDE_THEME.match(cand.source)
    if m and RESOLUTION_STEM.match(stem):
        suffix = m["kind"][len("images"):].strip("_-")
        stem = m["theme"] + (f"-{suffix}" if suffix else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


def assign_names(photos: Sequence[Photo]) -> list[str]:
    """``<package>-<stem>.png``; every name shared by several photos gets ``-<first 8 of its hash>``."""
    base = [f"{p.cand.package}-{stem_of(p.cand)}" for p in photos]
    taken: dict[str, int] = {}
    for b in base:
        taken[b] = taken.get(b, 0) + 1
    return [f"{b}-{p.content_hash[:8]}.png" if taken[b] > 1 else f"{b}.png" for b, p in zip(base, photos, strict=True)]


def check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PoolError(f"OUT is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PoolError(f"OUT is not empty: {out} (use --force to replace the pool there)")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _fmt(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def build_pool(cands: Sequence[Candidate], out: Path, *, force: bool = False, min_side: int = MIN_SIDE,
               long_side: int = LONG_SIDE, near_bits: int = NEAR_BITS, flat_max: float = FLAT_MAX,
               artwork: Mapping[str, Sequence[str]] | None = None,
               log: Callable[[str], None] = lambda s: None) -> PoolResult:
    """Filter, deduplicate, resize, split and write the pool into ``out`` (see the module docstring)."""
    check_names(sorted({c.package for c in cands}))
    check_out(out, force)
    artwork = ARTWORK if artwork is None else artwork
    cands = sorted(cands, key=lambda c: (c.package, len(c.source), c.source))   # shorter paths win ties
    counts: dict[str, dict[str, int]] = {c.package: dict.fromkeys(STAGES, 0) for c in cands}
    skipped: list[dict[str, str]] = []

    def skip(c: Candidate, reason: str, detail: str = "") -> None:
        counts[c.package][reason] += 1
        skipped.append({"package": c.package, "version": c.version, "source": c.source, "reason": reason,
                        "detail": detail})

    # one file under several names (symlinks): the name that is not a link stands for it
    owner: dict[str, Candidate] = {}
    for c in cands:
        real = os.path.realpath(c.path)
        if real not in owner or (owner[real].path.is_symlink() and not c.path.is_symlink()):
            owner[real] = c
    by_hash: dict[str, str] = {}
    photos: list[Photo] = []
    for c in cands:
        counts[c.package]["files"] += 1
        if c.path.suffix.lower() in VECTOR_SUFFIXES or c.path.suffix.lower() not in RASTER_SUFFIXES:
            skip(c, "vector")
            continue
        first = owner[os.path.realpath(c.path)]
        if first is not c:
            skip(c, "same_file", first.source)
            continue
        if any(fnmatch.fnmatchcase(c.source, g) for g in artwork.get(c.package, ())):
            skip(c, "artwork")
            continue
        try:
            with Image.open(c.path) as img:
                w, h = img.size
                if min(w, h) < min_side:
                    skip(c, "small", f"{w}x{h}")
                    continue
                arr, transparent = to_rgb(img)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            skip(c, "unreadable", str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
            continue
        size = (arr.shape[1], arr.shape[0])
        if transparent > MAX_TRANSPARENT:
            skip(c, "transparent", f"{transparent:.3f}")
            continue
        digest = content_hash(arr)
        if digest in by_hash:
            skip(c, "exact_dup", by_hash[digest])
            continue
        by_hash[digest] = c.source
        arr = resize(arr, long_side)
        flat = flat_fraction(arr)
        if flat >= flat_max:
            skip(c, "flat", f"{flat:.3f}")
            continue
        photos.append(Photo(c, size, digest, difference_hash(arr), difference_hash(arr, centre=True)))
        log(f"read {c.package} {c.source} {_fmt(size)}")

    kept: list[Photo] = []
    for p in sorted(photos, key=lambda p: (-p.size[0] * p.size[1], p.cand.package, p.cand.source)):
        twin = next((k for k in kept if hamming(k.dhash, p.dhash) <= near_bits
                     or hamming(k.dhash_centre, p.dhash_centre) <= near_bits), None)
        if twin is not None:
            skip(p.cand, "near_dup", twin.cand.source)
        else:
            kept.append(p)
            counts[p.cand.package]["kept"] += 1
    if not kept:
        total = {s: sum(c[s] for c in counts.values()) for s in STAGES}
        why = ", ".join(f"{s} {n}" for s, n in total.items() if n and s not in ("files", "kept"))
        raise PoolError(f"nothing usable found in {total['files']} files ({why or 'no image files'})")
    kept.sort(key=lambda p: (p.cand.package, p.cand.source))

    if force:
        for name in OWNED:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    rows: list[dict[str, str]] = []
    for p, name in zip(kept, assign_names(kept), strict=True):
        with Image.open(p.cand.path) as img:
            arr = resize(to_rgb(img)[0], long_side)
        split = split_of(p.cand.scene or p.content_hash)
        write_atomic(out / split / name, png_bytes(arr))
        c = p.cand
        rows.append({"file": name, "split": split, "package": c.package, "version": c.version, "source": c.source,
                     "licence": c.licence, "licence_source": c.licence_source, "copyright": c.copyright,
                     "package_licences": c.package_licences, "original_size": _fmt(p.size),
                     "output_size": f"{arr.shape[1]}x{arr.shape[0]}", "content_hash": p.content_hash,
                     "dhash": f"{p.dhash:064x}"})
        log(f"wrote {split}/{name}")
    rows.sort(key=lambda r: (r["split"], r["file"]))
    skipped.sort(key=lambda r: (r["package"], r["source"]))
    write_atomic(out / "pool.csv", csv_bytes(COLUMNS, rows))
    write_atomic(out / "skipped.csv", csv_bytes(SKIPPED_COLUMNS, skipped))
    settings = {"min_side": min_side, "long_side": long_side, "near_bits": near_bits, "flat_max": flat_max,
                "flat_level": FLAT_LEVEL, "splits": [list(s) for s in SPLITS],
                "versions": {c.package: c.version for c in cands}}
    doc = {"settings": settings, "counts": counts, "photos": rows}
    write_atomic(out / "pool.json", (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    return PoolResult(rows, skipped, counts)


def summary(result: PoolResult) -> str:
    """Counts per package and stage, and photos per split, as a Markdown table."""
    lines = ["| package | " + " | ".join(STAGES) + " |", "|---" * (len(STAGES) + 1) + "|"]
    for pkg, c in sorted(result.counts.items()):
        lines.append(f"| {pkg} | " + " | ".join(str(c[s]) for s in STAGES) + " |")
    total = {s: sum(c[s] for c in result.counts.values()) for s in STAGES}
    lines.append("| total | " + " | ".join(str(total[s]) for s in STAGES) + " |")
    per_split = {name: sum(r["split"] == name for r in result.rows) for _, name in SPLITS}
    lines.append("")
    lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in per_split.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (train/, val/, report/, pool.csv, pool.json)")
    parser.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES),
                        help=f"Debian packages, and '{SKIMAGE}' for its bundled photos (default: %(default)s)")
    parser.add_argument("--install", action="store_true", help="apt-get install the packages that are missing")
    parser.add_argument("--force", action="store_true", help="replace the pool in a non-empty OUT")
    parser.add_argument("--min-side", type=int, default=MIN_SIDE, help="skip photos with a shorter short side")
    parser.add_argument("--long-side", type=int, default=LONG_SIDE, help="resize so that the long side is this")
    parser.add_argument("--near-bits", type=int, default=NEAR_BITS, help="near-duplicate dhash distance (of 256)")
    parser.add_argument("--flat-max", type=float, default=FLAT_MAX, help="skip images this flat or flatter")
    parser.add_argument("--keep-artwork", action="store_true", help="do not skip the known artwork (ARTWORK)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every image read")
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    try:
        packages = list(dict.fromkeys(args.packages))
        check_names(packages)
        check_out(args.out, args.force)
        cands = discover(packages, args.install, log)
        result = build_pool(cands, args.out, force=args.force, min_side=args.min_side, long_side=args.long_side,
                            near_bits=args.near_bits, flat_max=args.flat_max,
                            artwork={} if args.keep_artwork else ARTWORK, log=log if args.verbose else lambda s: None)
    except PoolError as exc:
        print(f"photo_pool: error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    print(f"{len(result.rows)} photos in {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
