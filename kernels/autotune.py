"""Autotune configs that also work under the Triton interpreter (which can't try several).

HEARTFAST_AUTOTUNE=0 keeps only the first candidate on a GPU too: no tuning at start-up, as under
compute-sanitizer (benchmarks/sanitize.py), where every tried config would run slowly under its checks.
"""
from __future__ import annotations

import os

import triton


def configs(candidates: list[triton.Config]) -> list[triton.Config]:
    """All candidates on a GPU; only the first under TRITON_INTERPRET=1 or HEARTFAST_AUTOTUNE=0."""
    first_only = os.environ.get("TRITON_INTERPRET", "0") == "1" or os.environ.get("HEARTFAST_AUTOTUNE", "1") == "0"
    return candidates[:1] if first_only else candidates
