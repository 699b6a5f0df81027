"""Import of PyTorch captioner checkpoints (self-critical.pytorch, es-img-captioning).

`convert_checkpoint(config, source, model_path, infos_path, workdir)` is the library
behind `python -m nic_jax.convert`; one module per source family.
"""

from nic_jax.conversion.importer import SOURCES, convert_checkpoint, convert_params

__all__ = ["SOURCES", "convert_checkpoint", "convert_params"]
