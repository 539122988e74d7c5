"""Old name of :mod:`extremeq.inference.lm` (the packed export of BitNet language models)."""

from extremeq.inference.lm import ExportFormatError, PackedBitLinear, PackedLM, export_lm, load_lm  # noqa: F401
