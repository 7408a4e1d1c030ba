"""The retraining protocol's actions: photo subsets for the budget curves, models made of two (``pcsr
swap``), curves compared at equal GFLOPs (``pcsr compare``'s rule), and the two analyses that say where a
re-trained model falls short: how well U_1 fits a folder (``upsampler_fit``) and where routing loses
its curve (``routing_oracle``).

Training itself is the ``train`` action and each k sweep the ``eval`` action (``studies.actions``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from pcsr_lightning.evaluation.compare import curve_points, gaps_at_equal_gflops, worst_gaps_both_ways
from pcsr_lightning.evaluation.evaluate import curve_series
from pcsr_lightning.evaluation.plot import save_plot
from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.inference.session import InferenceSession, upscale_forced
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import list_images
from pcsr_lightning.io.runs import JobResult, finished_jobs, format_value
from pcsr_lightning.io.swap import swap_parts
from pcsr_lightning.io.weights import load_model, save_model
from pcsr_lightning.measure.metrics import quantize, shave_for
from pcsr_lightning.models.sampler import make_cell, make_coord
from pcsr_lightning.studies.context import Context, Outcome
from pcsr_lightning.studies.report import markdown_table

CURVE_SETTINGS = ("k", "all-light", "all-heavy")


# ------------------------------------------------------------------ photos a training run reads


def link_photos(dest: Path, folders: Sequence[Path]) -> list[Path]:
    """``dest`` (emptied first) with a link to every image of each folder, the images a training run
    would read there; two images of one name are refused (the run would read only one)."""
    dest = fresh_folder(dest)
    links = []
    for folder in folders:
        for photo in list_images(folder):
            link = dest / photo.name
            if link.is_symlink():
                raise ValueError(f"two images named {photo.name}: {link.resolve()} and {photo}")
            link.symlink_to(photo.resolve())
            links.append(link)
    return links


def fresh_folder(folder: Path) -> Path:
    """``folder``, made or emptied of the links an earlier, interrupted job left (and only links)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if not old.is_symlink():
            raise ValueError(f"{folder} holds {old.name}, which is no link: a folder of photo links only")
        old.unlink()
    return folder


def photos_within(folder: Path, allowed: Sequence[Path]) -> list[Path]:
    """The images of ``folder``, each of which must be (or link to) a photo of one of the ``allowed``
    role folders: a step may train on a subset of its roles' photos, never on other photos."""
    images = list_images(folder)
    if not images:
        raise ValueError(f"no images in {folder}")
    known = {p.resolve() for folder in allowed for p in list_images(folder)}
    for image in images:
        if image.resolve() not in known:
            raise ValueError(f"{image} is not a photo of the step's role folder(s) "
                             f"({', '.join(map(str, allowed))}): a step trains on its own roles' photos only")
    return images


def subset_of(photos: Sequence[Path], fraction: float | None = None, count: int | None = None,
              seed: int = 0) -> list[Path]:
    """A part of ``photos`` (in name order): ``fraction`` keeps every round(1/fraction)-th photo (0.25:
    the 1st, 5th, 9th, ...; each fraction's photos inside every larger one's), ``count`` the first
    ``count`` of one random order drawn with ``seed`` (again each count inside every larger one)."""
    photos = sorted(photos)
    if (fraction is None) == (count is None):
        raise ValueError("subset takes one of fraction (0 < fraction <= 1) or count (a number of photos)")
    if fraction is not None:
        if not 0 < float(fraction) <= 1:
            raise ValueError(f"subset.fraction must be in (0, 1], got {fraction}")
        return photos[:: max(1, round(1 / float(fraction)))]
    if not 1 <= int(count) <= len(photos):
        raise ValueError(f"subset.count must be between 1 and the {len(photos)} photos there are, got {count}")
    order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(int(seed))).tolist()
    return sorted(photos[i] for i in order[: int(count)])


def subset(ctx: Context, fraction: float | None = None, count: int | None = None, seed: int = 0) -> Outcome:
    """Links to a part of the role's photos in ``<job>/photos`` (``subset_of``), for a training step's
    ``photos``: the budget curves' fewer photos, the same ones every time."""
    if ctx.photos is None:
        raise ValueError("subset reads photos: give the step a role (train) whose folder is set")
    chosen = subset_of(list_images(ctx.photos), fraction, count, seed)
    folder = fresh_folder(ctx.out / "photos")
    for photo in chosen:
        (folder / photo.name).symlink_to(photo.resolve())
    return Outcome(rows=[{"photos": len(chosen), "of": len(list_images(ctx.photos))}],
                   values={"train_photos": str(ctx.out / "photos"), "photos": len(chosen)})


# ------------------------------------------------------------------ models made of two


def swap(ctx: Context, base: str, donor: str, parts: Mapping[str, Sequence[str]]) -> Outcome:
    """``pcsr swap`` once per name: ``base`` with ``parts[name]`` (e.g. ``[classifier]``,
    ``[upsamplers.1]``) taken from ``donor``, in the job folder; one value per name."""
    values, rows = {}, []
    for name, names in parts.items():
        base_model, donor_model = load_model(base), load_model(donor)
        model = swap_parts(base_model, donor_model, list(names), str(base), str(donor))
        meta = {"swapped": {"base": Path(base).name, "donor": Path(donor).name, "parts": list(names)}}
        values[name] = str(save_model(ctx.out / f"{name}.ckpt", model, base_model.config, meta))
        rows.append({"name": name, "parts": " ".join(names)})
    return Outcome(rows=rows, values=values)


# ------------------------------------------------------------------ curves at equal GFLOPs


def _agrees(point: Mapping, other: Mapping) -> bool:
    return all(point[k] == other[k] for k in point.keys() & other.keys())


def _matches(row: Mapping, where: Mapping | None) -> bool:
    return all(row.get(k) == v for k, v in (where or {}).items())


def step_rows(results: Sequence[JobResult], steps: Sequence[str], point: Mapping) -> list[dict]:
    """The result rows of the jobs of ``steps`` whose settings agree with ``point`` on the keys they share
    (each row with its job's settings and its ``step``)."""
    return [{**r.point, **row, "step": r.job.split("/")[0]} for r in results
            if r.job.split("/")[0] in steps and _agrees(r.point, point) for row in r.rows]


def curve_gaps(reference: Sequence[dict], other: Sequence[dict]) -> dict:
    """``pcsr compare``'s numbers for one curve against the reference: the worst gap at equal GFLOPs
    both ways, where it is (k, heavy share), and the gaps at the all-light and all-heavy ends."""
    ref = curve_points(reference)
    points = [r for r in other if r["setting"] in CURVE_SETTINGS]
    worst = worst_gaps_both_ways(ref, curve_points(points))
    at_points = gaps_at_equal_gflops(ref, [(r["gflops_paper"], r["psnr"]) for r in points])
    located = [(g["gap_db"], r) for g, r in zip(at_points, sorted(points, key=lambda r: (r["gflops_paper"], r["psnr"])),
                                                strict=True) if g["gap_db"] is not None]
    where = min(located, key=lambda item: item[0])[1] if located else {}

    def end(setting: str) -> float | None:
        mine = [r["psnr"] for r in other if r["setting"] == setting]
        theirs = [r["psnr"] for r in reference if r["setting"] == setting]
        return mine[0] - theirs[0] if mine and theirs else None

    return {"worst_gap": worst["either"], "gap_at_own_points": worst["at_other"],
            "gap_at_reference_points": worst["at_reference"], "worst_k": where.get("k"),
            "worst_heavy_share": where.get("heavy_share"), "all_light_gap": end("all-light"),
            "all_heavy_gap": end("all-heavy")}


def compare(ctx: Context, steps: Sequence[str], reference: Mapping, curves: Sequence[str],
            where: Mapping | None = None, title: str = "PSNR vs GFLOPs", log_x: bool = True) -> Outcome:
    """``pcsr compare`` over finished eval jobs: the rows of ``steps`` (those of jobs whose settings agree
    with this job's own) matching ``where``; the ones matching ``reference`` are the reference curve, the
    others one curve per value of the ``curves`` keys. One row per curve with its gaps (``curve_gaps``);
    ``compare.md`` (every point and its gap) and ``curves.png`` in the job folder."""
    rows = [r for r in step_rows(finished_jobs(ctx.study_dir), list(steps), ctx.point) if _matches(r, where)]
    ref = [r for r in rows if _matches(r, reference)]
    if not any(r.get("setting") in CURVE_SETTINGS for r in ref):
        raise ValueError(f"compare: no reference rows ({dict(reference)}) among the finished jobs of {list(steps)}")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if not _matches(r, reference):
            groups.setdefault(tuple(r.get(k) for k in curves), []).append(r)
    if not groups:
        raise ValueError(f"compare: no curve beside the reference among the finished jobs of {list(steps)}")
    out, lines, series = [], [], [s for s in curve_series(_curve(ref), "reference")]
    for key, group in groups.items():
        label = ", ".join(f"{k}={format_value(v)}" for k, v in zip(curves, key, strict=True))
        gaps = curve_gaps(ref, group)
        out.append({**dict(zip(curves, key, strict=True)), **gaps})
        series += curve_series(_curve(group), label)
        shown = "n/a (no overlap)" if gaps["worst_gap"] is None else f"{gaps['worst_gap']:+.3f} dB"
        lines.append(f"{label} vs reference: worst gap at equal GFLOPs {shown}")
    table = markdown_table(out, [*curves, "worst_gap", "worst_k", "worst_heavy_share", "all_light_gap",
                                 "all_heavy_gap"])
    write_text(f"# {title}\n\nReference: {dict(reference)}\n\n{table}\n\n" + "\n".join(f"{x}  " for x in lines)
               + "\n", ctx.out / "compare.md")
    save_plot(series, ctx.out / "curves.png", title, log_x=log_x)
    for line in lines:
        print(line)
    return Outcome(rows=out)


def _curve(rows: Sequence[dict]) -> list[dict]:
    """The rows ``curve_series`` draws: the k sweep and both ends (no other setting's rows)."""
    return [r for r in rows if r.get("setting") in CURVE_SETTINGS]


# ------------------------------------------------------------------ where a re-trained model is short


def _pairs(ctx: Context, scale: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if ctx.photos is None:
        raise ValueError("this action reads photos: give the step a role whose folder is set")
    return [load_pair(path, scale, None, "paper") for path in list_images(ctx.photos)]


def light_fit(net, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], scale: float = 4) -> tuple[float, float]:
    """Mean over photos of U_1's all-light L1 and MSE (every pixel rendered by U_1, class 1 forced), in
    0-255 levels with the PSNR border shaved."""
    shave = shave_for(scale)
    l1 = mse = 0.0
    for hr, lr in pairs:
        with torch.no_grad():
            sr = upscale_forced(net, lr[None], scale, 1).sr[0].clamp(0, 1)
        diff = (sr - hr)[..., shave:-shave, shave:-shave] * 255
        l1 += float(diff.abs().mean())
        mse += float(diff.pow(2).mean())
    return l1 / len(pairs), mse / len(pairs)


def active_shares(net, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], side: int = 96,
                  scale: int = 4) -> list[list[float]]:
    """Per hidden layer of U_1, the share of queries (on a ``side`` x ``side`` LR corner of each photo) on
    which each unit is positive: a unit at 0 is dead, no gradient reaches it."""
    relus = [m for m in net.upsamplers[1].layers if isinstance(m, torch.nn.ReLU)]
    seen: list[list[torch.Tensor]] = [[] for _ in relus]

    def watch(k: int):
        return lambda module, inputs, out: seen[k].append((out > 0).reshape(-1, out.shape[-1]).float().mean(0))

    hooks = [r.register_forward_hook(watch(k)) for k, r in enumerate(relus)]
    hr_side = side * scale
    coord = make_coord((hr_side, hr_side)).reshape(1, -1, 2)
    cell = make_cell((hr_side, hr_side), coord.shape[1])[None]
    try:
        for _, lr in pairs:
            with torch.no_grad():
                net.alone(lr[None, :, :side, :side], coord, cell, 1)
    finally:
        for h in hooks:
            h.remove()
    return [torch.stack(s).mean(0).tolist() for s in seen]


def upsampler_fit(ctx: Context, ckpts: Mapping[str, str], every: int = 3, side: int = 96) -> Outcome:
    """How well each model's light upsampler U_1 fits the role's photos (on the training photos: is a
    re-trained U_1 short because it fits what it learned from less well?) and how many of its hidden
    units are dead (never positive on every ``every``-th photo's LR corner)."""
    scale = 4
    pairs = _pairs(ctx, scale)
    rows, lines = [], []
    for name, ckpt in ckpts.items():
        net = load_model(ckpt).model.eval()
        l1, mse = light_fit(net, pairs, scale)
        shares = active_shares(net, pairs[:: max(1, int(every))], side, scale)
        dead = [sum(s == 0.0 for s in layer) for layer in shares]
        rows.append({"name": name, "photos": len(pairs), "l1": l1, "mse": mse,
                     "dead_units": " / ".join(f"{d} of {len(layer)}" for d, layer in zip(dead, shares, strict=True))})
        lines.append(f"{name}: " + "; ".join(f"hidden layer {k + 1}: " + " ".join(f"{s:.2f}" for s in layer)
                                             for k, layer in enumerate(shares)))
    write_text(markdown_table(rows, ["name", "photos", "l1", "mse", "dead_units"]) + "\n\nActive share per unit:\n\n"
               + "\n".join(f"- {x}" for x in lines) + "\n", ctx.out / "upsampler_fit.md")
    return Outcome(rows=rows)


ORACLE_SHARES = (0.0, 0.003, 0.008, 0.015, 0.03, 0.06, 0.12)


def pixel_errors(net, hr: torch.Tensor, lr: torch.Tensor, scale: int = 4
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per shaved HR pixel: p_0, and the squared errors of U_0 and of U_1 alone (mean over RGB, 0-255)."""
    shave = shave_for(scale)
    with torch.no_grad():
        session = InferenceSession(net, lr[None], scale)
        target = quantize(hr)
        errors = []
        for cls in (0, 1):
            sr = session.forced(cls, refine=False).sr[0]
            errors.append((quantize(sr) - target).pow(2).mean(0)[shave:-shave, shave:-shave].flatten())
    h, w = hr.shape[-2:]
    p0 = session.prepared().probs[0, :, 0].view(h, w)[shave:-shave, shave:-shave].flatten().double()
    return p0, errors[0], errors[1]


def psnr_of(mse: float) -> float:
    return math.inf if mse <= 0 else 10 * math.log10(255.0**2 / mse)


def psnr_at(e1: torch.Tensor, gain_sorted: torch.Tensor, share: float) -> float:
    """PSNR with the first round(share * N) pixels of ``gain_sorted`` (their e_1 - e_0) sent to U_0."""
    n = round(share * e1.numel())
    return psnr_of((float(e1.sum()) - float(gain_sorted[:n].sum())) / e1.numel())


def global_shares(ranked: Sequence[tuple[torch.Tensor, torch.Tensor, float]], shares: Sequence[float]) -> list[float]:
    """Mean PSNR at each share when one threshold on p_0 over every photo's pixels sends that share of them
    all to U_0, as routing at one k does (each photo gets its own share). ``ranked``: per photo, p_0 sorted
    descending, the cumulative e_1 - e_0 in that order, and e_1's sum."""
    everything = torch.cat([p for p, _, _ in ranked]).sort(descending=True).values
    means = []
    for share in shares:
        n = round(share * everything.numel())
        threshold = everything[n - 1] if n else math.inf
        total = 0.0
        for p, cum_gain, e1_sum in ranked:
            sent = int((p >= threshold).sum())
            total += psnr_of((e1_sum - (float(cum_gain[sent - 1]) if sent else 0.0)) / p.numel())
        means.append(total / len(ranked))
    return means


def oracle_curves(net, pairs, shares: Sequence[float], scale: int = 4) -> tuple[list[float], list[float], list[float]]:
    """Mean PSNR over photos at each share of pixels sent to U_0: chosen by the classifier (the same share in
    every photo), by an oracle that knows each pixel's gain, and by the classifier with one threshold over
    all photos (as one k routes)."""
    by_classifier, by_oracle = [0.0] * len(shares), [0.0] * len(shares)
    ranked = []
    for hr, lr in pairs:
        p0, e0, e1 = pixel_errors(net, hr, lr, scale)
        gain = e1 - e0
        order = torch.argsort(p0, descending=True)
        chosen = gain[order]
        best = torch.sort(gain, descending=True).values
        ranked.append((p0[order].float(), chosen.cumsum(0), float(e1.sum())))
        for i, share in enumerate(shares):
            by_classifier[i] += psnr_at(e1, chosen, share) / len(pairs)
            by_oracle[i] += psnr_at(e1, best, share) / len(pairs)
    return by_classifier, by_oracle, global_shares(ranked, shares)


ORACLE_WAYS = ("classifier, each photo alike", "oracle, each photo alike", "classifier, one threshold")


def routing_oracle(ctx: Context, ckpts: Mapping[str, str], shares: Sequence[float] = ORACLE_SHARES) -> Outcome:
    """Where a two-upsampler model's curve is lost, on the role's photos (no refinement): the mean PSNR
    with a share of the pixels sent to U_0 by its classifier, by an oracle, and by one threshold over all
    photos. A model whose classifier rows trail another's while its oracle row does not is short by its
    classifier; one whose oracle row trails too, by what its upsamplers leave to gain."""
    scale = 4
    pairs = _pairs(ctx, scale)
    rows, table = [], []
    for name, ckpt in ckpts.items():
        net = load_model(ckpt).model.eval()
        if getattr(net, "num_classes", 1) != 2:
            raise ValueError(f"{ckpt}: routing_oracle compares two-upsampler PCSR models")
        for how, values in zip(ORACLE_WAYS, oracle_curves(net, pairs, list(shares), scale), strict=True):
            rows += [{"name": name, "how": how, "share": s, "psnr": v} for s, v in zip(shares, values, strict=True)]
            table.append({"model": f"{name}: {how}", **{f"{s:.1%}": v for s, v in zip(shares, values, strict=True)}})
    header = ["model", *(f"{s:.1%}" for s in shares)]
    write_text(f"{len(pairs)} photos, x{scale}, no refinement; mean PSNR (dB) with a share of the pixels sent "
               f"to U_0\n\n{markdown_table(table, header)}\n", ctx.out / "routing_oracle.md")
    return Outcome(rows=rows)
