"""Training: stage LightningModules, the staged pipeline and its manifest, the ``pcsr-train`` Hydra app."""
