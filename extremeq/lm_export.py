"""Old name of :mod:`extremeq.inference.lm` (the packed export of BitNet language models)."""

from extremeq.inference.lm import (  # noqa: F401
    ExportFormatError,
    PackedBitLinear,
    PackedLM,
    export_lm,
    load_lm,
)
