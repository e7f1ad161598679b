"""Triton kernels (installed as `heartfast.kernels`): one file per family, no model code."""
