"""The model classes a weight file may build: each registers itself here, and ``io`` asks this list.

It is an allow-list, not a second way to configure: configs name classes by ``_target_`` as Hydra
does, and a file naming a class that is not registered (nor allowed by the user) is refused.
"""

from __future__ import annotations

from torch import nn

_REGISTERED: dict[str, type[nn.Module]] = {}


def register(cls: type[nn.Module]) -> type[nn.Module]:
    """A class decorator: ``cls`` may be built from a file, by ``pcsr_lightning.models.<Name>`` (the name
    configs and old checkpoints use) and by its defining module's path."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"only torch.nn.Module classes can be registered, got {cls!r}")
    for name in (f"pcsr_lightning.models.{cls.__name__}", f"{cls.__module__}.{cls.__qualname__}"):
        if _REGISTERED.get(name, cls) is not cls:
            raise ValueError(f"{name} is registered already, for another class")
        _REGISTERED[name] = cls
    return cls


def model_classes() -> dict[str, type[nn.Module]]:
    """Name -> class of every registered model (a copy: callers cannot change the allow-list)."""
    return dict(_REGISTERED)
