"""pcsr-eval: ``pcsr eval`` as a Hydra app, so evaluations can be swept with ``-m`` (e.g. over eval.k)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pcsr_lightning.apps.commands.eval import run_settings
from pcsr_lightning.apps.jobs import fail, record_result
from pcsr_lightning.config import config_dir
from pcsr_lightning.evaluation.compare import read_summary
from pcsr_lightning.evaluation.evaluate import EvalSettings
from pcsr_lightning.evaluation.wandb_log import eval_identity
from pcsr_lightning.extras import MissingExtra
from pcsr_lightning.tracking import job_overrides, run_name, sweep_name, wandb_run


def settings_of(cfg: DictConfig):
    """EvalSettings from the ``eval`` node; ``k`` and ``skip_flat`` may each be a number or a list. Every
    value is checked against the type its setting takes first, so an error names the key (``eval.k``)."""

    node = OmegaConf.to_container(cfg.eval, resolve=True)
    node["ks"] = floats(node.pop("k"), "eval.k")
    node["skip_flat"] = floats(node.get("skip_flat", []), "eval.skip_flat")
    check_types(node)
    return instantiate(node, _convert_="all")


def floats(value, key: str = "value") -> list[float]:
    """A number or a list of numbers, as a list; ValueError naming ``key`` otherwise."""
    items = value if isinstance(value, list) else [value]
    if not all(_is_number(x) for x in items):
        raise ValueError(f"{key} must be a number or a list of numbers, got {value!r}")
    return [float(x) for x in items]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# what each kind of annotation of EvalSettings accepts, and how a message names one of it and several
KINDS = {"float": (_is_number, "a number", "numbers"),
         "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", "integers"),
         "bool": (lambda v: isinstance(v, bool), "true or false", "true/false values"),
         "str": (lambda v: isinstance(v, str), "a string", "strings")}


def check_types(node: dict) -> None:
    """Each key of the ``eval`` node is a setting of EvalSettings and holds the type its annotation says
    (a number, an integer, true/false, a string, a list of them, or null where the setting allows it)."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(EvalSettings)}
    for key, value in node.items():
        if key == "_target_":
            continue
        name = "k" if key == "ks" else key
        if key not in fields:
            raise ValueError(f"eval.{name} is not a setting of pcsr-eval (the settings: "
                             f"{', '.join('k' if f == 'ks' else f for f in fields)})")
        annotation = fields[key]
        if value is None and "None" in annotation:
            continue
        many = annotation.startswith("Sequence[")
        kind = next((k for k in KINDS if k in annotation.removeprefix("Sequence[")), None)
        if kind is None:
            continue
        test, one, several = KINDS[kind]
        ok = isinstance(value, list) and all(map(test, value)) if many else test(value)
        if not ok:
            raise ValueError(f"eval.{name} must be {f'a list of {several}' if many else one}"
                             f"{' or null' if 'None' in annotation else ''}, got {value!r}")


def run_eval_job(cfg: DictConfig, out: Path) -> int:
    """One evaluation job; with ``wandb=true`` its own run (files in ``out``), finished even when it fails."""

    settings = settings_of(cfg)
    outputs = (out / "per_image.csv", out / "summary.csv", out / "curve.png")
    if not cfg.wandb:
        return run_settings(settings, *outputs)

    experiment, tags = eval_identity(settings.ckpt)
    name = run_name(experiment, job_overrides(), list(cfg.tracking.ignore))
    group = cfg.tracking.group or sweep_name() or f"eval {experiment}"
    with wandb_run(name, group, "eval", tags, OmegaConf.to_container(cfg, resolve=True), out) as run:
        return run_settings(settings, *outputs, run=run)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def main(cfg: DictConfig):
    """One evaluation job; a failure ends it as ``apps.jobs.fail`` says (in a multirun the other jobs go on)."""
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        code = run_eval_job(cfg, out)
    except (InstantiationException, ValueError, FileNotFoundError, OmegaConfBaseException, MissingExtra) as err:
        cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
        return fail(2, str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__, out)
    if code:
        return fail(code, "some images could not be processed (named above)" if code == 1 else f"exit code {code}")
    record_result(out, read_summary(out / "summary.csv"))
    return code


if __name__ == "__main__":
    main()
