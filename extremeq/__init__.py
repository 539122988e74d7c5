"""extremeq: extreme (1-bit and ternary) quantization for JAX and Flax NNX."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: ``extremeq.export`` is the function ``extremeq.inference.export``; importing it pulls in
    # JAX, Flax and the kernels, so it happens on first use and ``import extremeq`` stays light.
    if name == "export":
        from extremeq.inference import export

        return export
    raise AttributeError(f"module 'extremeq' has no attribute {name!r}")
