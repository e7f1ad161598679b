"""GPU suite modules: each defines `run(suite)` (see benchmarks/gpu_suite.py)."""
