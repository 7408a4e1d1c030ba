"""What a study's job can do: each action takes the job's context and the step's ``args`` and returns
the job's result rows and the values later steps ``use`` (files it made, e.g. a checkpoint).

The actions call the package's own functions (the ones ``pcsr eval``, ``pcsr bench``, ``pcsr fit-fill``,
``pcsr-train`` and ``pcsr import-official`` call), so a study measures exactly what the commands do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from pcsr_lightning.bench.inputs import parse_size
from pcsr_lightning.bench.run import BenchSettings, run_bench
from pcsr_lightning.bench.runtime import RuntimeBenchSettings, bench_runtimes
from pcsr_lightning.config import compose_config
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.data.samples import materialize_samples
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.evaluation.evaluate import EvalSettings, evaluate, summarize, write_outputs
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import list_images, read_image, write_png
from pcsr_lightning.io.official import import_official
from pcsr_lightning.io.weights import load_model
from pcsr_lightning.studies.budget_studies import budget_calibration
from pcsr_lightning.studies.context import Context, Outcome
from pcsr_lightning.studies.driver import override_value
from pcsr_lightning.studies.gate_studies import gate_grid
from pcsr_lightning.studies.measurements import (
    demo,
    div2k_scale,
    paper_table,
    png_level,
    train_speed,
    upscale_runs,
)
from pcsr_lightning.studies.report import write_report
from pcsr_lightning.studies.training_studies import (
    compare,
    link_photos,
    photos_within,
    routing_oracle,
    subset,
    swap,
    upsampler_fit,
)
from pcsr_lightning.training.fill import fit_fill_model
from pcsr_lightning.training.pipeline import prepare_run, run_pipeline


def _photos(ctx: Context, what: str) -> Path:
    if ctx.photos is None:
        raise ValueError(f"{what} reads photos: give the step a role (train, val or report) whose folder is set")
    return ctx.photos


def import_release(ctx: Context, files: Mapping[str, str]) -> Outcome:
    """The study's models, one value per name: an authors' released ``.pth`` imported into the project's
    format in the job folder, any other model file (``.ckpt``, ``.safetensors``, a model folder) as it is."""
    values, rows = {}, []
    for name, src in files.items():
        if src is None or not Path(str(src)).exists():
            raise FileNotFoundError(f"model {name}: {src} not found (the authors' .pth files: set release= or "
                                    "PCSR_OFFICIAL_DIR to their folder)")
        path = Path(str(src))
        values[name] = str(import_official(path, ctx.out / f"{name}.ckpt") if path.suffix == ".pth" else path)
        loaded = load_model(values[name])
        rows.append({"name": name, "kind": loaded.kind, "source": path.name})
    return Outcome(rows=rows, values=values)


def crops(ctx: Context, hr_size: str | None = None, portrait: bool = False, samples: bool = False,
          names: Sequence[str] | None = None, textures: Sequence[str] = ()) -> Outcome:
    """Centre crops of the role's photos at ``hr_size`` (HxW) in ``<job>/photos``: a photo larger than twice
    the size is first shrunk (MATLAB-style bicubic) so the crop keeps most of the scene; a smaller one is
    left out (or, with ``portrait``, turned a quarter turn when it fits only so). ``samples``: scikit-image's
    photos (``names``, default the held-out ones) at their own size instead of a folder; ``textures``:
    scikit-image's photos of these names mirror-tiled to ``hr_size`` (a deliberately textured set)."""
    folder = ctx.out / "photos"
    if samples:
        materialize_samples(folder, names)
        return Outcome(rows=[{"photos": len(list_images(folder))}], values={"hr_dir": str(folder)})
    if hr_size is None:
        raise ValueError("crops needs hr_size (HxW), or samples: true")
    size = parse_size(hr_size)
    if textures:
        for name in textures:
            write_png(mirror_tiled(sample_photo(name), size), folder / f"texture_{name}.png")
        return Outcome(rows=[{"photos": len(textures), "hr_size": hr_size}], values={"hr_dir": str(folder)})
    kept = 0
    for path in list_images(_photos(ctx, "crops")):
        img = read_image(path)
        if not _fits(img, size) and portrait and _fits(img.transpose(-1, -2), size):
            img = img.rot90(1, (-2, -1))  # a quarter turn counter-clockwise
        crop = fitted_crop(img, size)
        if crop is None:
            continue
        write_png(crop, folder / f"{path.stem}.png")
        kept += 1
    if not kept:
        raise ValueError(f"no photo of {ctx.photos} holds a {hr_size} crop"
                         + ("" if portrait else " (portrait: true also takes photos that fit turned)"))
    return Outcome(rows=[{"photos": kept, "hr_size": hr_size}], values={"hr_dir": str(folder)})


def mosaics(ctx: Context, hr_size: str, grid: str = "3x3", count: int = 1) -> Outcome:
    """``count`` mosaics of ``hr_size`` (HxW) in ``<job>/photos``, each a ``grid`` (rows x columns) of crops of
    the role's photos at their own resolution: larger-than-2K sizes from 2K photos with their real texture
    (an upscaled photo would be mostly smooth). Cell n of mosaic i shows photo (i x cells + n) mod N, at a
    position that moves with n and i, so that repeated photos show different parts."""
    (h, w), (rows, cols) = parse_size(hr_size), parse_size(grid)
    photos = [read_image(p) for p in list_images(_photos(ctx, "mosaics"))]
    ch, cw = h // rows, w // cols
    small = [p.shape for p in photos if p.shape[-2] < ch or p.shape[-1] < cw]
    if small:
        raise ValueError(f"mosaics {hr_size} of {grid}: a photo of {tuple(small[0][-2:])} is smaller than a "
                         f"{ch}x{cw} cell")
    folder = ctx.out / "photos"
    for i in range(count):
        out = torch.empty(3, ch * rows, cw * cols)
        for n in range(rows * cols):
            img = photos[(i * rows * cols + n) % len(photos)]
            (ph, pw), turn = img.shape[-2:], 97 * (n + 7 * i)
            y0, x0 = turn % (ph - ch + 1), (3 * turn) % (pw - cw + 1)
            r, c = divmod(n, cols)
            out[:, r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = img[:, y0 : y0 + ch, x0 : x0 + cw]
        write_png(out, folder / f"mosaic_{i}.png")
    return Outcome(rows=[{"mosaics": count, "hr_size": f"{ch * rows}x{cw * cols}", "photos": len(photos)}],
                   values={"hr_dir": str(folder)})


def mirror_tiled(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``img`` repeated by reflection (no seams: each copy mirrors its neighbour) until it covers ``size``."""
    (h, w), (hh, ww) = img.shape[-2:], size
    row = torch.cat([img, img.flip(-1)], -1).repeat(1, 1, -(-ww // (2 * w)))
    full = torch.cat([row, row.flip(-2)], -2).repeat(1, -(-hh // (2 * h)), 1)
    return full[:, :hh, :ww].contiguous()


def _fits(img: torch.Tensor, size: tuple[int, int]) -> bool:
    return img.shape[-2] >= size[0] and img.shape[-1] >= size[1]


def fitted_crop(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    (h, w), (hh, ww) = img.shape[-2:], size
    if h < hh or w < ww:
        return None
    shrink = max(hh / h, ww / w)
    if shrink <= 0.5:
        img = imresize(img, (max(hh, round(h * shrink)), max(ww, round(w * shrink)))).clamp(0, 1)
        h, w = img.shape[-2:]
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    return img[:, y0 : y0 + hh, x0 : x0 + ww].contiguous()


def _k_as_ks(settings: dict) -> None:
    """A step's ``k`` (a number or a list, as on the command line) as the settings' ``ks`` list."""
    if "k" in settings:
        k = settings.pop("k")
        settings["ks"] = list(k) if isinstance(k, (list, tuple)) else [k]


def eval_action(ctx: Context, per_image: bool = False, images: Sequence[str] | None = None, **settings) -> Outcome:
    """``pcsr eval`` on the role's photos (or ``hr_dir``): its CSVs and curve in the job folder; the rows are
    the summary's (``per_image``: every image's rows, the ``mean`` rows too). ``images``: only these files
    of the folder (e.g. the one photo a leave-one-out choice is for), linked into ``<job>/photos``."""
    if "hr_dir" not in settings:
        settings["hr_dir"] = str(_photos(ctx, "eval"))
    if images is not None:
        settings["hr_dir"] = str(_only(Path(settings["hr_dir"]), images, ctx.out / "photos"))
    _k_as_ks(settings)
    if isinstance(settings.get("skip_flat"), (int, float)):
        settings["skip_flat"] = [settings["skip_flat"]]
    chosen = EvalSettings(**settings)
    records, failures = evaluate(chosen, log=print)
    if failures:
        raise ValueError(f"{failures} image(s) of {chosen.hr_dir} could not be evaluated (named above)")
    summary = summarize(records)
    write_outputs(records, summary, str(ctx.out / "per_image.csv"), str(ctx.out / "summary.csv"),
                  str(ctx.out / "curve.png"), metrics=chosen.metrics)
    rows = summary
    if per_image:
        rows = against_pcsr([dict(vars(r)) for r in records]) + [dict(row, image="mean") for row in summary]
    return Outcome(rows=rows)


def against_pcsr(rows: list[dict]) -> list[dict]:
    """Each gated PCSR row with ``vs_pcsr_db`` (its PSNR minus PCSR's without the gate, same image and k)
    and ``gflops_vs_pcsr`` (the ratio of their paper GFLOPs)."""
    plain = {(r["image"], r["k"]): r for r in rows if r["model"] == "pcsr" and r.get("skip_flat") is None}
    for r in rows:
        base = plain.get((r["image"], r["k"]))
        if r.get("skip_flat") is not None and base is not None:
            r["vs_pcsr_db"] = r["psnr"] - base["psnr"]
            r["gflops_vs_pcsr"] = r["gflops_paper"] / base["gflops_paper"]
    return rows


def _only(folder: Path, names: Sequence[str], out: Path) -> Path:
    """A folder of links to the named files of ``folder`` (each must be there)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        source = folder / str(name)
        if not source.is_file():
            raise FileNotFoundError(f"images: {name} is not a file of {folder}")
        link = out / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    return out


BENCH_COLUMNS = ("ms_original", "ms_backbone", "ms_pcsr", "ratio_pcsr", "psnr_original", "psnr_pcsr")
REFERENCE_COLUMNS = ("speedup", "speedup_routed", "ms_routed_fast", "ms_routed_reference", "classes_identical",
                     "psnr_diff_db")  # the fast path against the release-style reference loop


def bench(ctx: Context, hr_size: str, images: bool = False, hr_dir: str | None = None, **settings) -> Outcome:
    """``pcsr bench`` (interleaved rounds, paired ratios): on the photo mosaic, or with ``images`` on each
    photo of the role or of ``hr_dir`` (e.g. a ``crops`` or ``mosaics`` step's; centre-cropped to ``hr_size``),
    or on ``hr_image`` alone; one row per variant per input, with the ratios, and a summary row (with the fast
    path against the reference loop); each input's report as ``bench-*.json``."""
    inputs: list[str | None] = [None]
    hr_image = settings.pop("hr_image", None)
    if hr_image is not None:
        inputs = [str(hr_image)]
    elif images:
        inputs = [str(p) for p in list_images(Path(hr_dir) if hr_dir else _photos(ctx, "bench"))]
    _k_as_ks(settings)
    rows = []
    for image in inputs:
        chosen = BenchSettings(hr_size=parse_size(hr_size), hr_image=image, **settings)
        chosen.check()
        report = run_bench(chosen, log=print)
        name = "mosaic" if image is None else Path(image).name
        write_text(json.dumps(report, indent=2), ctx.out / f"bench-{Path(name).stem}.json")  # pcsr bench --json's
        original, pcsr = report["ms_original"], report["ms_pcsr"]
        for row in report["rows"]:
            rows.append({"image": name, "variant": row["name"], "ms": row["ms"], "vs_original": row["ms"] / original,
                         "vs_pcsr": row["ms"] / pcsr, "psnr": row["psnr"], "heavy_share": row["heavy_share"],
                         "skipped_share": row["skipped_share"], "peak_mb": row["peak_mb"]})
        versus = report.get("fast_vs_reference") or {}
        rows.append({"image": name, "variant": "summary", **{c: report.get(c) for c in BENCH_COLUMNS},
                     **{c: versus.get(c) for c in REFERENCE_COLUMNS}})
    return Outcome(rows=rows)


def bench_runtime(ctx: Context, hr_size: str, hr_dir: str | None = None, **settings) -> Outcome:
    """``pcsr bench-runtime`` (the ONNX export in ONNX Runtime beside the PyTorch path, paired rounds) on
    each photo of the role (or ``hr_dir``, e.g. a ``crops`` step's), centre-cropped to ``hr_size``: one row
    per model per photo and the PCSR / original ratios in each runtime."""
    rows = []
    for image in list_images(hr_dir or _photos(ctx, "bench_runtime")):
        report = bench_runtimes(RuntimeBenchSettings(hr_image=str(image), hr_size=parse_size(hr_size), **settings))
        for m in report["models"]:
            rows.append({"image": image.name, "variant": m["name"], "ms_pytorch": m["ms"]["pytorch"],
                         "ms_onnxruntime": m["ms"]["onnxruntime"], "ort_vs_pytorch": m["ratio"],
                         "within_one_level": m["agreement"]["within_one_level"], "heavy_share": m["heavy_share"]})
        ratios = report["pcsr_vs_original"]
        rows.append({"image": image.name, "variant": "pcsr_vs_original", "ratio_pytorch": ratios["pytorch"],
                     "ratio_onnxruntime": ratios["onnxruntime"], "load_average": report["machine"].get("load_average")})
    return Outcome(rows=rows)


def fit_fill(ctx: Context, ckpt: str, scale: int = 4, **options) -> Outcome:
    """``pcsr fit-fill`` on the role's photos: the model with its fitted fill, in the job folder."""
    out, stats = fit_fill_model(ckpt, list_images(_photos(ctx, "fit_fill")), ctx.out / "model.ckpt", scale,
                                **options)
    return Outcome(rows=[stats], values={"ckpt": str(out)})


def train(ctx: Context, overrides: Sequence[str] = (), photos: str | bool | None = None, value: str = "ckpt"
          ) -> Outcome:
    """``pcsr-train`` with ``overrides`` (``data=image_folder``), its run in the job folder, validated on the
    val folder; continued (``resume=true``) when an earlier, interrupted run of the job left its checkpoints.
    It trains on its role's photos: with ``roles: [train, val]`` on all of them (linked in ``<job>/photos``),
    or on ``photos``, a folder an earlier step made of them (``subset``); ``photos: false``: on the data the
    overrides name (the default: the embedded sample photos), no role. ``value``: the name the final
    checkpoint goes by for later steps (``ckpt``; two training steps give two names). A list among the
    ``overrides`` (a study-wide ``${train_overrides}``) is spliced in."""
    run_dir = ctx.out / "run"
    extra: list[str] = []
    train_dir = None
    if photos is not False:
        folders = list(ctx.role_folders) or [_photos(ctx, "train")]
        if photos not in (None, True):
            train_dir = Path(str(photos))
            photos_within(train_dir, folders)
        elif len(folders) > 1:
            link_photos(ctx.out / "photos", folders)
            train_dir = ctx.out / "photos"
        else:
            train_dir = folders[0]
        val_dir = ctx.folders.get("val") or train_dir
        # quoted: a job folder's name holds '=' and ','
        extra = ["data=image_folder", f"data.train.path={override_value(str(train_dir))}",
                 f"data.val.path={override_value(str(val_dir))}"]
    resume = ["resume=true"] if (run_dir / "manifest.json").is_file() else []
    given = [str(o) for item in overrides for o in (item if isinstance(item, (list, tuple)) else [item])]
    cfg = compose_config([*given, *extra, *resume], output_dir=run_dir)
    start = time.perf_counter()
    manifest = run_pipeline(cfg, [], [], prepare_run(cfg))
    seconds = time.perf_counter() - start
    count = None if train_dir is None else len(list_images(train_dir))
    rows = [{"photos": count, **row} for row in manifest.metric_rows()]
    rows.append({"stage": "all", "photos": count, "train_seconds": seconds})
    return Outcome(rows=rows, values={value: str(manifest.final_checkpoint)})


def report(ctx: Context, tables: Sequence[Mapping] = (), plots: Sequence[Mapping] = ()) -> Outcome:
    """The study's report from every finished job: ``summary.csv``, ``report.md`` (the tables) and plots."""
    written = write_report(ctx.study_dir, ctx.out, tables, plots, title=ctx.study_dir.name)
    return Outcome(rows=[{"file": str(p)} for p in written])


ACTIONS: dict[str, Callable[..., Outcome]] = {
    "import_release": import_release, "crops": crops, "mosaics": mosaics, "eval": eval_action, "bench": bench,
    "bench_runtime": bench_runtime,
    "fit_fill": fit_fill, "train": train, "report": report,
    "swap": swap, "compare": compare, "subset": subset, "upsampler_fit": upsampler_fit,
    "routing_oracle": routing_oracle,
    "train_speed": train_speed, "div2k_scale": div2k_scale, "png_level": png_level,
    "upscale_runs": upscale_runs, "paper_table": paper_table, "demo": demo,
    "budget_calibration": budget_calibration, "gate_grid": gate_grid}
