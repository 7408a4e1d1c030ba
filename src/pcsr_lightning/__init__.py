"""pcsr-lightning: PCSR pixel-level classification for fast super-resolution."""

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
