"""pcsr-lightning: PCSR pixel-level classification for fast super-resolution.

    import pcsr_lightning
    model = pcsr_lightning.load("carn-pcsr.safetensors")   # .ckpt, .safetensors, a model folder or a run
    sr = model(image, k=0.0)    # PIL image, HxWx3 numpy array or tensor in, the same type out
    model.save_pretrained("my-model")   # a model folder with its model card; pcsr_lightning.from_pretrained reads it
"""

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)

from pcsr_lightning.inference.srmodel import SRModel, Upscaled, from_pretrained, load  # noqa: E402 - after the version

__all__ = ["SRModel", "Upscaled", "__version__", "from_pretrained", "load"]
