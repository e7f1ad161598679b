"""Autotune configs that also work under the Triton interpreter (which can't try several), and the pruning
every kernel shares.

HEARTFAST_AUTOTUNE=0 keeps only the first candidate on a GPU too: no tuning at start-up, as under
compute-sanitizer (benchmarks/sanitize.py), where every tried config would run slowly under its checks.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import triton

IEEE_MAX_TILE = 64 * 64
_TUNERS: list = []
_first_only = [False]


def configs(candidates: list[triton.Config]) -> list[triton.Config]:
    """All candidates on a GPU; only the first under TRITON_INTERPRET=1 or HEARTFAST_AUTOTUNE=0."""
    first_only = os.environ.get("TRITON_INTERPRET", "0") == "1" or os.environ.get("HEARTFAST_AUTOTUNE", "1") == "0"
    return candidates[:1] if first_only else candidates


def tuned(tuner):
    """Register an autotuned kernel (put it above @triton.autotune) so that `first_config_only` can reset it."""
    _TUNERS.append(tuner)
    return tuner


@contextmanager
def first_config_only():
    """Within the block kernels tune nothing: each new key runs its first candidate. For correctness sweeps
    over many shapes, where each new dtype/shape/constexpr set would otherwise compile every candidate.
    Keys chosen inside are forgotten on exit, so later calls tune as usual."""
    _first_only[0] = True
    try:
        yield
    finally:
        _first_only[0] = False
        for tuner in _TUNERS:
            tuner.cache.clear()


def _output_tile(c: triton.Config) -> int:
    """Elements of the tile a program's dot produces: BLOCK_M x BLOCK_N, BLOCK_N x BLOCK_K, or BLOCK_N."""
    blocks = c.kwargs
    if "BLOCK_M" in blocks:
        return blocks["BLOCK_M"] * blocks["BLOCK_N"]
    return blocks["BLOCK_N"] * blocks.get("BLOCK_K", 1)


def prune(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """`early_config_prune` of every kernel: the first candidate inside `first_config_only`. Exact fp32 dots
    (PRECISION 'ieee' or IEEE=True) have no tensor-core path and unroll into FMAs, so a 128x128 tile takes
    ptxas up to a minute to compile (measured: 15-62 s per config for the flash forward at D=128) and spills
    anyway: fp32 runs keep tiles of at most 64x64 (the smallest when none is). bf16/fp16/tf32 keep all."""
    if _first_only[0]:
        return configs[:1]
    if kwargs.get("PRECISION") != "ieee" and kwargs.get("IEEE") is not True:
        return configs
    small = [c for c in configs if _output_tile(c) <= IEEE_MAX_TILE]
    return small or [min(configs, key=_output_tile)]
