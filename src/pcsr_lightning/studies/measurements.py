"""The studies' measurement actions: training speed, DIV2K's cache and loader, the PNG level, upscales in
fresh processes, the paper's Table 1 and the demo.

Each calls the package's own functions (the ones ``pcsr table`` and the training pipeline call); only
``upscale_runs`` starts ``pcsr upscale`` processes, because a fresh process (its start-up, its peak
memory from zero) is what it measures.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from PIL import Image
from torch.utils.data import DataLoader

from pcsr_lightning.bench.inputs import parse_size, photo_mosaic
from pcsr_lightning.bench.timing import machine_info
from pcsr_lightning.config import compose_config, config_names
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.data.datamodule import TrainCrops
from pcsr_lightning.data.div2k import DIV2K, crop_positions
from pcsr_lightning.data.samples import materialize_samples
from pcsr_lightning.evaluation.demo import measure_and_draw, official_models
from pcsr_lightning.evaluation.evaluate import rows_to_csv
from pcsr_lightning.evaluation.paper_table import (
    build_table,
    resolve_row,
    rows_from_runs,
    table_columns,
    table_markdown,
)
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import list_images, read_image, to_uint8, write_png
from pcsr_lightning.studies.context import Context, Outcome
from pcsr_lightning.training.pipeline import prepare_run, run_pipeline
from pcsr_lightning.training.speed import one_batch, time_stages

# ------------------------------------------------------------------ training speed


def train_speed(ctx: Context, experiment: str, queries: int | None = None, batch_size: int = 16, steps: int = 3,
                warmup: int = 1, device: str = "cpu", precision: str = "32-true", model: str | None = None) -> Outcome:
    """ms per optimiser step of every stage of ``experiment`` (``model``: e.g. ``pcsr_routed``, whose stage
    of U_1 alone follows stage 1), on one batch of real crops repeated (data loading left out)."""
    overrides = [f"model={model}"] if model else []
    rows = time_stages(experiment, queries, one_batch(batch_size, queries), device, steps, warmup, precision, overrides)
    machine = machine_info(torch.device(device))
    return Outcome(rows=[{**{k: v for k, v in r.items() if k != "times_ms"}, "device": device, "precision": precision,
                          "cpu": machine.get("cpu")} for r in rows])


# ------------------------------------------------------------------ DIV2K at scale

DIV2K_HEIGHTS = (1356, 1536, 1152, 1356)  # DIV2K's training images are 2040 wide, mostly 1356 high
DIV2K_WIDTH = 2040
DIV2K_TRAIN = 800
SUB_BYTES = 128 * 128 * 3  # one stored 128x128 sub-image (the former cache format)


def make_div2k_like(root: Path, images: int) -> list[Path]:
    """``root/DIV2K_train_HR/0001.png ...`` and one validation image, photo-like (tiles of scikit-image's
    photos, so the bicubic rescales work on real texture), 2040 wide."""
    train = root / "DIV2K_train_HR"
    train.mkdir(parents=True, exist_ok=True)
    (root / "DIV2K_valid_HR").mkdir(exist_ok=True)
    paths = []
    for i in range(images):
        path = train / f"{i + 1:04d}.png"
        if not path.is_file():
            mosaic = photo_mosaic((DIV2K_HEIGHTS[i % len(DIV2K_HEIGHTS)], DIV2K_WIDTH))
            write_png(torch.roll(mosaic, shifts=(61 * i, 97 * i), dims=(1, 2)), path)
        paths.append(path)
    valid = root / "DIV2K_valid_HR" / "0801.png"
    if not valid.is_file():
        write_png(photo_mosaic((256, 256)), valid)
    return paths


def disk_bytes(folder: Path) -> int:
    """Blocks actually allocated under ``folder`` (what ``du`` reports)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


def crops_per_second(source, queries: int | None, batches: int, batch_size: int = 16, workers: int = 1) -> float:
    """Training crops per second served by a DataLoader with ``workers`` processes (0: this process)."""
    loader = DataLoader(TrainCrops(source, queries=queries), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up and the first batch are not the steady state
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def div2k_scale(ctx: Context, images: int = 4, workers: int | None = None, batches: int = 40,
                queries: int | None = None, keep: bool = False) -> Outcome:
    """A generated DIV2K-shaped folder (in the job folder; removed afterwards unless ``keep``) prepared from
    scratch: cache bytes and preparation seconds per image, crops/s of one loader worker, the same for
    DIV2K's 800 images."""
    if images < 1 or batches < 1:
        raise ValueError(f"images and batches must be >= 1, got {images}, {batches}")
    root = ctx.out / "DIV2K"
    if root.exists():  # an interrupted job's folder: preparation is timed from scratch
        shutil.rmtree(root)
    make_div2k_like(root, images)
    source = DIV2K(root, workers=workers, progress=False)
    start = time.perf_counter()
    source.prepare()
    prep_s = time.perf_counter() - start
    index = json.loads((source.cache_dir / "index.json").read_text())
    old_bytes = sum(len(crop_positions(h, 128, 64)) * len(crop_positions(w, 128, 64)) * SUB_BYTES
                    for _, _, h, w, _ in index["entries"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker
    try:
        per_worker = crops_per_second(source, queries, batches, workers=1)
        in_process = crops_per_second(source, queries, batches, workers=0)
    finally:
        torch.set_num_threads(threads)
    row = {"images": images, "windows": len(source), "prep_workers": workers or os.cpu_count() or 1,
           "disk_mb_per_image": disk_bytes(source.cache_dir) / images / 1e6,
           "old_format_mb_per_image": old_bytes / images / 1e6, "prep_s_per_image": prep_s / images,
           "crops_per_s_one_worker": per_worker, "crops_per_s_in_process": in_process,
           "queries": queries or 128 * 128, "cpu": machine_info(torch.device("cpu")).get("cpu")}
    row.update(div2k_gb=row["disk_mb_per_image"] * DIV2K_TRAIN / 1e3,
               div2k_old_format_gb=row["old_format_mb_per_image"] * DIV2K_TRAIN / 1e3,
               div2k_prep_min=row["prep_s_per_image"] * DIV2K_TRAIN / 60,
               div2k_crops_per_s_8_workers=8 * per_worker)
    if not keep:
        shutil.rmtree(root)
    return Outcome(rows=[row])


# ------------------------------------------------------------------ PNG level


def centre_crop(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    (h, w), (hh, ww) = img.shape[-2:], size
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    return img[:, y0 : y0 + hh, x0 : x0 + ww]


def encode_png(arr: np.ndarray, level: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def png_write(arr: np.ndarray, levels: Sequence[int], rounds: int) -> tuple[dict[int, float], dict[int, int]]:
    """Median write ms and bytes per level for one (H,W,3) uint8 image, levels interleaved per round;
    raises if any level does not decode to the same pixels (PNG is lossless whatever the level)."""
    times: dict[int, list[float]] = {level: [] for level in levels}
    sizes: dict[int, int] = {}
    for _ in range(rounds):
        for level in levels:
            start = time.perf_counter()
            data = encode_png(arr, level)
            times[level].append(time.perf_counter() - start)
            sizes[level] = len(data)
            if not np.array_equal(np.asarray(Image.open(io.BytesIO(data))), arr):
                raise ValueError(f"PNG level {level} did not decode to the same pixels")
    return {level: statistics.median(t) * 1000 for level, t in times.items()}, sizes


def png_level(ctx: Context, hr_size: str = "1080x1920", levels: Sequence[int] = (0, 1, 2, 3, 6, 9),
              rounds: int = 3) -> Outcome:
    """Writing a result PNG per zlib level on centre crops of the role's photos (those at least
    ``hr_size``): per level the median over photos of the write ms and size, and both against level 6
    (or the first level), each ratio taken photo by photo."""
    levels = [int(v) for v in levels]
    if rounds < 1 or not levels or any(not 0 <= v <= 9 for v in levels):
        raise ValueError(f"png_level needs rounds >= 1 and levels in 0..9, got rounds={rounds}, levels={levels}")
    size = parse_size(hr_size)
    measured = []
    if ctx.photos is None:
        raise ValueError("png_level reads photos: give the step a role (train, val or report) whose folder is set")
    for path in list_images(ctx.photos):
        img = read_image(path)
        if img.shape[-2] >= size[0] and img.shape[-1] >= size[1]:
            measured.append(png_write(to_uint8(centre_crop(img, size)), levels, rounds))
    if not measured:
        raise ValueError(f"no photo of {ctx.photos} is at least {hr_size}")
    ref = 6 if 6 in levels else levels[0]
    rows = [{"level": level, "photos": len(measured), "hr_size": hr_size,
             "write_ms": statistics.median(ms[level] for ms, _ in measured),
             "vs_ref_time": statistics.median(ms[level] / ms[ref] for ms, _ in measured),
             "mb": statistics.median(sz[level] for _, sz in measured) / 1e6,
             "vs_ref_size": statistics.median(sz[level] / sz[ref] for _, sz in measured), "ref_level": ref,
             "pillow": Image.__version__}
            for level in levels]
    return Outcome(rows=rows)


# ------------------------------------------------------------------ upscales in fresh processes


def lr_input(out: Path, hr_size: str | None, hr_image: str | None, scale: int = 4) -> Path:
    """The LR image to upscale: a photo (cropped to a multiple of ``scale``) or a photo mosaic of
    ``hr_size``, shrunk by MATLAB-style bicubic."""
    hr = read_image(hr_image) if hr_image else photo_mosaic(parse_size(hr_size or "2160x3840"))
    hr = hr[:, : hr.shape[1] // scale * scale, : hr.shape[2] // scale * scale]
    return write_png(downscale(hr, scale).clamp(0, 1), out / "lr.png")


def timed_process(command: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> dict:
    """Run ``command`` as a fresh process: wall, user and system seconds, peak RSS (the kernel's, as
    ``/usr/bin/time`` reports it); its output goes to ``log``. A failing process raises, naming the log."""
    with open(log, "w") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise ValueError(f"{command[3:5]} exited {proc.returncode}: see {log}")
    return {"wall_s": wall, "user_s": usage.ru_utime, "system_s": usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024}  # ru_maxrss: KiB on Linux


def upscale_runs(ctx: Context, ckpt: str, hr_size: str | None = "2160x3840", hr_image: str | None = None,
                 tiles: Sequence[int] = (0,), rounds: int = 1, k: float = 0.0, threads: int | None = None,
                 device: str = "cpu", report_memory: bool = False) -> Outcome:
    """``pcsr upscale`` of one LR image (a mosaic of ``hr_size`` or ``hr_image``, shrunk x4) with each
    ``--tile`` value, each run a fresh process, the tiles alternating for ``rounds`` rounds: per run wall,
    user, system seconds and peak RSS; per tile the medians and whether its PNG equals the first tile's."""
    if rounds < 1 or not tiles:
        raise ValueError(f"upscale_runs needs rounds >= 1 and at least one tile, got {rounds}, {list(tiles)}")
    lr = lr_input(ctx.out, hr_size, hr_image)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    rows = []
    for round_ in range(1, rounds + 1):
        for tile in tiles:
            sr = ctx.out / f"sr_tile{tile}"
            shutil.rmtree(sr, ignore_errors=True)
            command = [sys.executable, "-m", "pcsr_lightning.apps.launch", "pcsr", "upscale", "--ckpt", str(ckpt),
                       "--input", str(lr), "--output", str(sr), "--tile", str(tile), "--k", str(k), "--device", device,
                       *(["--report-memory"] if report_memory else [])]
            run = timed_process(command, ctx.out / f"upscale_tile{tile}_round{round_}.log", env)
            rows.append({"round": round_, "tile": tile, **run})
    first = (ctx.out / f"sr_tile{tiles[0]}" / "lr.png").read_bytes()
    for tile in tiles:
        runs = [r for r in rows if r["tile"] == tile]
        rows.append({"round": "median", "tile": tile, **{key: statistics.median(r[key] for r in runs)
                                                         for key in ("wall_s", "user_s", "system_s", "peak_rss_mib")},
                     "same_png_as_first_tile": (ctx.out / f"sr_tile{tile}" / "lr.png").read_bytes() == first})
    return Outcome(rows=rows)


# ------------------------------------------------------------------ the paper's Table 1


def paper_table(ctx: Context, rows: Mapping[str, str | None] | None = None, runs: str | None = None,
                datasets: Mapping[str, str | None] | None = None, ks: Sequence[float] = (-1, -0.5, 0, 0.5, 1, 1.5, 2),
                psnr_tolerance: float = 0.05, crop: str = "paper", device: str = "cpu",
                metrics: Sequence[str] = ("psnr",), out: str | None = None) -> Outcome:
    """``pcsr table``'s measurement: the rows given (name -> checkpoint, manifest or run folder; null rows
    left out) over the finished runs below ``runs`` (a missing folder: none), on each dataset (none given:
    the held-out sample photos, written to the job folder); ``table.md``, ``table.csv`` and the curves in
    the job folder, and copied to ``out`` when given."""
    found = rows_from_runs(Path(runs)) if runs and Path(runs).is_dir() else {}
    found.update(dict(resolve_row(f"{name}={path}") for name, path in (rows or {}).items() if path))
    if not found:
        raise ValueError("no checkpoints: give rows.NAME=CKPT (a manifest or run folder too), runs=DIR with "
                         "training runs, or let the study's train step run")
    copy_to = Path(out) if out else None
    if copy_to is not None and copy_to.resolve() in {Path(p).resolve() for p in (datasets or {}).values() if p}:
        raise ValueError(f"out={out} is a dataset folder: the table and curves would count as test images")
    chosen = {name: str(path) for name, path in (datasets or {}).items() if path}
    for name, path in chosen.items():
        if not Path(path).is_dir():
            raise FileNotFoundError(f"datasets.{name}: {path} is not a folder")
    if not chosen:
        chosen["samples"] = str(materialize_samples(ctx.out / "samples"))
    cells, curves = build_table(found, chosen, [float(k) for k in ks], float(psnr_tolerance),
                                None if crop == "none" else crop, device, ctx.out, metrics=list(metrics))
    markdown = table_markdown(cells, list(metrics))
    print(markdown)
    written = [write_text(markdown, ctx.out / "table.md"),
               write_text(rows_to_csv(table_columns(list(metrics)), cells), ctx.out / "table.csv"), *curves.values()]
    if copy_to is not None:
        copy_to.mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copyfile(path, copy_to / Path(path).name)
        print(f"wrote {', '.join(Path(p).name for p in written)} to {copy_to}")
    return Outcome(rows=cells, values={"table": str(ctx.out / "table.md")})


# ------------------------------------------------------------------ the demo


def demo(ctx: Context, experiment: str = "fsrcnn_pcsr", profile: str = "demo", official: str | None = None,
         k: Sequence[float] | None = None, overrides: Sequence[str] = ()) -> Outcome:
    """``pcsr demo``'s pipeline: ``experiment`` trained with ``profile`` on its own data (the embedded
    sample photos; the run in ``<job>/run``, continued when interrupted), then measured on the data's
    held-out photos against bicubic and all-heavy, and drawn (``demo.csv``, ``demo.png``); ``official``: a
    folder of released models whose class maps are drawn beside."""
    for key, group, value in (("experiment", "experiment", experiment), ("profile", "profile", profile)):
        if value not in config_names(group):
            raise ValueError(f"{key} {value!r} is not one of the {group} configs: {', '.join(config_names(group))}")
    run_dir = ctx.out / "run"
    resume = ["resume=true"] if (run_dir / "manifest.json").is_file() else []
    cfg = compose_config([f"experiment={experiment}", f"profile={profile}", *overrides, *resume], run_dir)
    if cfg.model.kind != "pcsr":
        raise ValueError(f"the demo trains a PCSR model; {experiment} is {cfg.model.kind}")
    released = official_models(Path(official), ctx.out / "official") if official else {}  # before training
    start = time.perf_counter()
    manifest = run_pipeline(cfg, [], [], prepare_run(cfg))
    trained = time.perf_counter() - start
    result = measure_and_draw(manifest.final_checkpoint, instantiate(cfg.data.val), int(cfg.data.scale), ctx.out,
                              released, k)
    rows = [{"method": r["method"], "psnr": float(r["psnr"]), "gflops_paper": float(r["gflops_paper"]),
             "heavy_share": float(r["heavy_share"]) if r["heavy_share"] else None, "train_s": trained}
            for r in result.rows]
    rows += [{"method": "picture k", "k": c.k, "heavy_share": c.heavy_share} for c in result.chosen]
    return Outcome(rows=rows, values={"ckpt": str(manifest.final_checkpoint), "picture": str(result.picture)})
