"""Resources a launcher asks for, derived from the trainer config before Lightning runs.

A submitit launcher (``conf/hydra/launcher``) must name GPUs and tasks per node when the job is submitted,
so the trainer's ``devices`` has to be a count there, not Lightning's ``-1`` or ``"auto"``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
