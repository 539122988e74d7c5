"""extremeq: extreme (1-bit and ternary) quantization for JAX and Flax NNX."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: ``extremeq.export`` (a callable module, extremeq/export.py) imports JAX, Flax and the
    # kernels only when first used, so ``import extremeq`` stays light.
    if name == "export":
        import importlib

        return importlib.import_module("extremeq.export")
    raise AttributeError(f"module 'extremeq' has no attribute {name!r}")
