"""TPU (Mosaic) Pallas kernels: one module per kernel, a kernel body with a VMEM accumulator over a
(M, N, K-steps) grid and one ``pallas_call`` wrapper whose block sizes are keyword arguments.
Called through the public entries with ``backend="pallas"`` on a TPU."""
