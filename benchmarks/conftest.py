"""CPU benchmarks (pytest-benchmark): ratios measured side by side in one run."""
import os

os.environ.setdefault("TRITON_INTERPRET", "0")
