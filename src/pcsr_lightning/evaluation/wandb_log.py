"""Evaluation results to a wandb run (offline unless WANDB_MODE says otherwise). wandb is imported
lazily: the GPU machines do not have it, and nothing else needs it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pcsr_lightning.io.weights import load_model
from pcsr_lightning.tracking import model_tags


def eval_identity(ckpt: str | Path) -> tuple[str, list[str]]:
    """(experiment name, tags) of a checkpoint: the training run's experiment (else the file's stem) and
    its backbone, kind and M."""

    loaded = load_model(ckpt)
    target = loaded.config.get("backbone", loaded.config.get("network", {})).get("_target_", "")
    backbone = target.rsplit(".", 1)[-1].lower() or "unknown"
    experiment = loaded.meta.get("experiment") or Path(ckpt).stem
    return str(experiment), model_tags(backbone, loaded.kind, getattr(loaded.model, "num_classes", None))


def log_results(run, name: str, columns: Sequence[str], rows: Sequence[dict], images: dict[str, str]) -> None:
    """One wandb.Table of ``rows`` (``<name>/table``) and one wandb.Image per PNG path in ``images``."""
    import wandb  # wandb is slow to import and only needed when logging to it

    data = [[r.get(c) for c in columns] for r in rows]
    payload = {f"{name}/table": wandb.Table(columns=list(columns), data=data)}
    payload.update({f"{name}/{key}": wandb.Image(str(path)) for key, path in images.items()})
    run.log(payload)


def log_evaluation(run, records: list[dict], record_columns: Sequence[str], summary: list[dict],
                   summary_columns: Sequence[str], plot: str | None = None) -> None:
    """An evaluation: the per-image table, the summary table, PSNR against GFLOPs over k as a line plot
    (``eval/psnr_vs_gflops``), the PNG curve when there is one, and the means in the run summary."""
    import wandb  # wandb is slow to import and only needed when logging to it

    log_results(run, "eval", summary_columns, summary, {"curve": plot} if plot else {})
    per_image = wandb.Table(columns=list(record_columns), data=[[r.get(c) for c in record_columns] for r in records])
    payload = {"eval/per_image": per_image}
    ks = sorted((r for r in summary if r["setting"] == "k" and r.get("skip_flat") is None),
                key=lambda r: r["gflops_paper"])
    if ks:
        curve = wandb.Table(columns=["k", "gflops_paper", "psnr"], data=[[r["k"], r["gflops_paper"], r["psnr"]]
                                                                          for r in ks])
        payload["eval/psnr_vs_gflops"] = wandb.plot.line(curve, "gflops_paper", "psnr",
                                                         title="PSNR (RGB) vs GFLOPs (paper) over k")
    run.log(payload)
    for r in summary:
        label = r["setting"] if r["k"] is None else f"k={r['k']:g}"
        if r.get("skip_flat") is not None:
            label += f" skip={r['skip_flat']:g}"
        for column in summary_columns:
            if column not in ("model", "setting", "k", "skip_flat", "images") and r.get(column) is not None:
                run.summary[f"{r['model']} {label}/{column}"] = r[column]
