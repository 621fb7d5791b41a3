"""Bicubic x2 up-sampling, the first baseline, as a submission file (``benchmark/docs/DESIGN.md``
§2): the harness's own reference model (``bonesr_bench.models.bicubic``, also the installed
entry point ``bicubic``), so that the file and the entry point are one model."""

from bonesr_bench.models.bicubic import Bicubic, load

__all__ = ["Bicubic", "load"]
