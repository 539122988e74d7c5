"""GPU (Triton) Pallas kernels: one module per kernel, a kernel body and one ``pallas_call`` wrapper
whose block sizes are keyword arguments (defaults and the tile table: :mod:`extremeq.kernels.tiles`).
Called through the public entries with ``backend="pallas"`` on a GPU, or ``"interpret"`` anywhere."""
