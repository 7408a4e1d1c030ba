"""Hydra configs shipped with the package (arch/*.yaml: the spec's models; eval.yaml: pcsr-eval)."""
