"""extremeq: extreme (1-bit and ternary) quantization for JAX and Flax NNX."""

__version__ = "0.1.0"
