"""Networks (archs): backbones, the pixel sampler's MLPs, PCSR and its router.

Kept free of training and data code so they can be built from a checkpoint alone. Each network class
registers itself (``registry.register``): the list of what a weight file may build, which ``io`` asks
after importing this package (so every class here is registered).
"""

from pcsr_lightning.models.carn import CARN
from pcsr_lightning.models.fill import LinearFill
from pcsr_lightning.models.fsrcnn import FSRCNN
from pcsr_lightning.models.gate import LearnedGate
from pcsr_lightning.models.mlp import MLP
from pcsr_lightning.models.original import OriginalSR
from pcsr_lightning.models.pcsr import KINDS, PCSR, model_kind
from pcsr_lightning.models.registry import model_classes, register
from pcsr_lightning.models.srresnet import SRResNet

__all__ = ["CARN", "FSRCNN", "KINDS", "LearnedGate", "LinearFill", "MLP", "OriginalSR", "PCSR", "SRResNet",
           "model_classes", "model_kind", "register"]
