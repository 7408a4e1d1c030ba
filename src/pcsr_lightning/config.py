"""The Hydra configs: where they are, and the model configs built from them outside a Hydra app.

``conf/backbone/<name>.yaml`` is the only place an architecture's widths are written: training,
``pcsr flops --arch`` and the release importer all read them from there.

Where the configs are, first match wins:
1. ``PCSR_CONFIG_DIR``, when set (a copy of ``conf/`` edited for one machine, say);
2. the repository's top-level ``conf/`` when the package runs from a checkout (``make install``, editable);
3. ``pcsr_lightning/conf`` inside an installed wheel (the build copies the repository's ``conf/`` there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pcsr_lightning.extras import need

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_CONF = PACKAGE_DIR.parents[1] / "conf"  # src/pcsr_lightning -> repository root
WHEEL_CONF = PACKAGE_DIR / "conf"


def config_dir() -> Path:
    env = os.environ.get("PCSR_CONFIG_DIR")
    candidates = [Path(env)] if env else [CHECKOUT_CONF, WHEEL_CONF]
    for path in candidates:
        if (path / "train.yaml").is_file():
            return path
    where = f"PCSR_CONFIG_DIR={env}" if env else f"{CHECKOUT_CONF} or {WHEEL_CONF}"
    raise FileNotFoundError(
        f"Hydra config folder (with train.yaml) not found at {where}: reinstall the package, "
        "or set PCSR_CONFIG_DIR to a copy of the repository's conf/ folder"
    )


def upsampler_widths(heavy: Sequence[int], light: Sequence[int], num_classes: int) -> list[list[int]]:
    """Hidden widths of U_0 (heavy) .. U_{M-1} (light). For M > 2 the middle upsamplers get the heavy
    depth and widths spaced geometrically between the heavy and the light width."""
    m = int(num_classes)
    if m < 1:
        raise ValueError(f"model.num_classes must be >= 1, got {m}")
    if m == 1:
        return [list(heavy)]
    out = [list(heavy)]
    for j in range(1, m - 1):
        t = j / (m - 1)
        width = round(heavy[0] * (light[0] / heavy[0]) ** t)
        out.append([width] * len(heavy))
    return out + [list(light)]


def extended_widths(
    source: Sequence[Sequence[int]], heavy: Sequence[int], light: Sequence[int], num_classes: int
) -> list[list[int]]:
    """Widths of an M-upsampler model built on a source model's upsamplers (``source``, U_0 first): the
    source's own widths, then, for the upsamplers it lacks, a ladder continuing below its lightest one
    with the step the default ladder takes (light / heavy)^(1 / (M - 1)), at the light depth, so every
    new upsampler is cheaper than the one before."""
    m = int(num_classes)
    out = [list(w) for w in source[:m]]
    step = (light[0] / heavy[0]) ** (1 / max(1, m - 1))
    while len(out) < m:
        out.append([max(1, round(out[-1][0] * step))] * len(light))
    return out


def register_resolvers() -> None:
    """The config resolvers, registered once per process: ``${pcsr_widths:heavy,light,M}``
    (conf/model/pcsr.yaml), ``${pcsr_devices:devices}`` and ``${pcsr_gpus:accelerator,devices}``
    (conf/hydra/launcher)."""
    resolvers = {"pcsr_widths": upsampler_widths, "pcsr_devices": device_count, "pcsr_gpus": gpus_per_node}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def config_names(group: str) -> list[str]:
    """The configs of one group, e.g. ``experiment``: one ``conf/<group>/*.yaml`` each."""
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def composition_error(err: Exception, overrides: Sequence[str]) -> ValueError:
    """Hydra's multi-line composition error as one line naming the override and, for a missing
    config, the ones that exist."""
    if getattr(err, "missing_cfg_file", None):
        options = f"; available: {', '.join(err.options)}" if err.options else ""
        return ValueError(f"no config {err.missing_cfg_file!r} in {config_dir()}{options}")
    text = str(err).strip()
    return ValueError(f"cannot compose the config with overrides {list(overrides)}: "
                      f"{text.splitlines()[0] if text else type(err).__name__}")


def compose_config(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """The training config composed without the Hydra app (tests, ``pcsr demo``, ``pcsr flops --arch``);
    a bad override is a ValueError naming it. Hydra is the ``train`` extra: only composing needs it, the
    inference install reads single configs (``backbone_node``) with OmegaConf alone."""
    hydra = need("hydra", "composing the training config")
    errors = need("hydra.errors", "composing the training config")
    global_hydra = need("hydra.core.global_hydra", "composing the training config").GlobalHydra.instance()
    register_resolvers()
    # inside a Hydra app (a study's job composes its training run) Hydra's own instance is set aside
    # while this config is composed, then put back
    outer = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with hydra.initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            try:
                cfg = hydra.compose(config_name="train", overrides=list(overrides))
            except errors.HydraException as err:
                raise composition_error(err, overrides) from None
    finally:
        if outer is not None:
            global_hydra.clear()
            global_hydra.initialize(outer)
    if output_dir is not None:
        cfg.paths.output_dir = str(output_dir)
    return cfg


def backbone_names() -> list[str]:
    """The architectures the project knows: one ``conf/backbone/*.yaml`` each."""
    return config_names("backbone")


def backbone_node(name: str) -> dict:
    """``conf/backbone/<name>.yaml`` as a plain dict, interpolations left as written."""
    path = config_dir() / "backbone" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown backbone {name!r}; expected one of {backbone_names()}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def model_config(backbone: str, original: bool = False, overrides: Sequence[str] = ()) -> dict:
    """The network training builds for ``backbone`` (``model.net``): PCSR, or the original network."""
    if backbone not in backbone_names():
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {backbone_names()}")
    cfg = compose_config([f"backbone={backbone}", f"model={'original' if original else 'pcsr'}", *overrides])
    return OmegaConf.to_container(cfg.model.net, resolve=True)


# Resources a launcher asks for, derived from the trainer config before Lightning runs: a submitit launcher
# (conf/hydra/launcher) must name GPUs and tasks per node when the job is submitted, so the trainer's
# ``devices`` has to be a count there, not Lightning's ``-1`` or ``"auto"``.
GPU_ACCELERATORS = ("gpu", "cuda")


def device_count(devices: int | str | Sequence[int]) -> int:
    """``trainer.devices`` as a number of devices per node (a list of device ids counts its entries)."""
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        count = len(devices)
    else:
        try:
            count = int(devices)
        except (TypeError, ValueError):
            count = 0
    if count < 1:
        raise ValueError(f"the launcher needs trainer.devices as a count of devices per node, got {devices!r}: "
                         "pass e.g. trainer.devices=4")
    return count


def gpus_per_node(accelerator: str, devices: int | str | Sequence[int]) -> int | None:
    """GPUs to reserve per node: one per device on a GPU trainer; on a CPU one None, so that no GPU request
    reaches SLURM (some CPU partitions refuse even ``--gpus-per-node=0``) and a local job sees no GPU."""
    accelerator = str(accelerator).lower()
    if accelerator in GPU_ACCELERATORS:
        return device_count(devices)
    if accelerator == "cpu":
        device_count(devices)  # still a count: it sets the tasks per node
        return None
    raise ValueError(f"the launcher cannot tell how many GPUs trainer.accelerator={accelerator!r} needs: "
                     "use trainer.accelerator=gpu or cpu, or set hydra.launcher.gpus_per_node")
