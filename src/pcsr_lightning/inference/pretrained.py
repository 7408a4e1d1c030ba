"""A model to share: the model folder (``config.json`` + ``model.safetensors``, the layout model hubs serve)
with a generated model card, ``README.md``, that says what the folder holds.

The card is built from the folder's own config and metadata, plus what the caller measured: the
architecture and its widths, the scale, the classes and their cost list, the results (PSNR and GFLOPs
on a named test set, at a named k), a licence field and the paper's citation. Results and licence are
kept in the metadata, so a folder converted again keeps its card's facts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.io.checkpoint import CheckpointError, LoadedModel
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.weights import CARD, FOLDER_CONFIG, FOLDER_WEIGHTS, format_of, load_folder, save_model

# The paper the models implement (the BibTeX of the repository's README.md; a test keeps them equal).
CITATION = """@inproceedings{jeong2024pcsr,
  title     = {Accelerating Image Super-Resolution Networks with Pixel-Level Classification},
  author    = {Jeong, Jinho and Kim, Jinwoo and Jo, Younghyun and Kim, Seon Joo},
  booktitle = {European Conference on Computer Vision (ECCV)},
  year      = {2024},
  eprint    = {2407.21448},
  archivePrefix = {arXiv}
}"""
RESULT_KEYS = ("dataset", "scale", "k", "psnr", "gflops")  # a result's fields; dataset and psnr required
CARD_SCALE = 4.0  # the scale the card's cost list is given at: the one PCSR is trained and published at


def check_results(results: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Results as the card lists them: each a dict with a dataset name and a finite PSNR, and optionally the
    scale, the k and the GFLOPs (paper convention); any other key is refused, naming it."""
    out = []
    for i, result in enumerate(results):
        if not isinstance(result, Mapping):
            raise ValueError(f"results[{i}] must be a dict with {', '.join(RESULT_KEYS)}, got {result!r}")
        unknown = sorted(set(result) - set(RESULT_KEYS))
        if unknown:
            raise ValueError(f"results[{i}]: unknown key(s) {unknown}; a result has {', '.join(RESULT_KEYS)}")
        if not result.get("dataset") or not isinstance(result.get("psnr"), (int, float)) \
                or not math.isfinite(result["psnr"]):
            raise ValueError(f"results[{i}] needs a dataset name and a finite psnr, got {dict(result)}")
        out.append({key: result[key] for key in RESULT_KEYS if result.get(key) is not None})
    return out


def _widths(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("_target_", "scale", "init") and v is not None)


def _class_name(config: dict) -> str:
    return str(config.get("_target_", "?")).rsplit(".", 1)[-1]


def model_card(loaded: LoadedModel, name: str = "model") -> str:
    """The Markdown model card of a loaded model (front matter for model hubs, then the facts)."""
    config, meta, model = loaded.config, loaded.meta, loaded.model
    licence = meta.get("license") or "unknown"
    params = sum(p.numel() for p in model.parameters())
    lines = ["---", f"license: {licence}", "library_name: pcsr-lightning",
             "tags: [super-resolution, image-to-image, pcsr]", "pipeline_tag: image-to-image", "---", "",
             f"# {name}", ""]
    if loaded.is_pcsr:
        backbone = config.get("backbone", {})
        lines += [f"A PCSR super-resolution model (pixel-level classification, ECCV 2024) over a "
                  f"{_class_name(backbone)} backbone, written by pcsr-lightning.", "",
                  "| | |", "| --- | --- |",
                  f"| architecture | PCSR: backbone {_class_name(backbone)} ({_widths(backbone)}), "
                  f"{model.num_classes} upsampler(s) of hidden widths {config.get('upsampler_hidden')}, "
                  f"classifier {config.get('classifier_hidden') or 'none (one upsampler)'} |",
                  "| scale | any scale > 1 (PCSR is trained and published at x4) |",
                  f"| classes | {model.num_classes} (class 0 the heaviest upsampler) |",
                  f"| cost list at x{CARD_SCALE:g} (heavy..light) | "
                  f"{', '.join(f'{c:.4f}' for c in cost_list(model, CARD_SCALE).tolist())} |"]
        if getattr(model, "gate", None) is not None:
            lines.append("| learned flat-tile gate | yes (`--skip-flat T --gate learned`) |")
        if getattr(model, "fill", None) is not None:
            lines.append(f"| fitted fill | x{model.fill.scale} (`--skip-flat T --skip-fill linear`) |")
    else:
        network = config.get("network", {})
        lines += [f"An original {_class_name(network)} super-resolution network (the one PCSR accelerates), "
                  "written by pcsr-lightning.", "", "| | |", "| --- | --- |",
                  f"| architecture | {_class_name(network)} ({_widths(network)}) |",
                  f"| scale | x{network.get('scale')} only |", "| classes | 1 (every pixel the same way) |"]
    lines.append(f"| parameters | {params:,} |")
    provenance = {key: meta[key] for key in ("experiment", "stage", "steps", "release_name", "source",
                                             "converted_from") if meta.get(key) not in (None, "")}
    if provenance:
        lines.append("| provenance | " + ", ".join(f"{k} {v}" for k, v in provenance.items()) + " |")
    lines.append(f"| license | {licence} |")
    lines += ["", "## Results", ""]
    results = meta.get("results") or []
    if results:
        lines += ["| dataset | scale | k | PSNR (dB) | GFLOPs (paper convention) |", "| --- | --- | --- | --- | --- |"]
        for r in results:
            lines.append(f"| {r['dataset']} | {r.get('scale', '')} | "
                         f"{r.get('k', '')} | {r['psnr']:.2f} | "
                         f"{'' if r.get('gflops') is None else format(r['gflops'], '.2f')} |")
    else:
        lines.append("Not measured for this file: `pcsr eval --ckpt <this folder> --hr-dir <test set>` measures "
                     "PSNR and GFLOPs; `save_pretrained(..., results=[...])` writes them here.")
    lines += ["", "## Use", "", "```python", "import pcsr_lightning", "",
              "model = pcsr_lightning.from_pretrained(\"path/to/this/folder\")",
              "sr = model(image" + (", k=0.0)" if loaded.is_pcsr else ")") +
              "   # a PIL image, an HxWx3 array or a tensor", "```", "",
              "```bash", "pcsr upscale --ckpt path/to/this/folder --input photo.png --output out/", "```", "",
              f"The folder holds `{FOLDER_CONFIG}` (the model config and metadata) and `{FOLDER_WEIGHTS}` (the "
              "weights); pcsr-lightning builds only its own model classes from it.", "",
              "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def write_card(folder: str | Path, name: str | None = None) -> Path:
    """The model card of the model folder ``folder``, written into it as README.md."""
    folder = Path(folder)
    loaded = load_folder(folder)
    return write_text(model_card(loaded, name or folder.name), folder / CARD)


def card_if_folder(path: str | Path, format: str | None = None) -> None:
    """After a command wrote a model to ``path``: its card too when it is a model folder."""
    if format_of(path, format) == "folder":
        write_card(path)


def _float32_cpu(model: torch.nn.Module) -> torch.nn.Module:
    """The network as a model folder stores it: float32 on the CPU (a copy when it runs otherwise)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point()) for t in tensors):
        return model
    return copy.deepcopy(model).to("cpu", torch.float32)


def save_pretrained(loaded: LoadedModel, folder: str | Path, results: Sequence[Mapping[str, Any]] | None = None,
                    license: str | None = None) -> Path:
    """Write ``loaded`` as a model folder with its card. ``results`` (see ``check_results``) and ``license``
    are added to the metadata and the card; the weights are stored in float32."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; a model folder is written as a folder")
    meta = dict(loaded.meta)
    if results:
        meta["results"] = [*meta.get("results", []), *check_results(results)]
    if license is not None:
        if not isinstance(license, str) or not license.strip():
            raise ValueError(f"license must be a licence name (e.g. 'mit', 'cc-by-4.0'), got {license!r}")
        meta["license"] = license.strip()
    save_model(folder, _float32_cpu(loaded.model), loaded.config, meta, "folder")
    write_card(folder)
    return folder
