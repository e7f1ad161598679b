"""Synthetic ECG throughput: ten-second 500 Hz 12-lead records per second (target >= 500 on 2 cores).

    .venv/bin/python -m pytest benchmarks/test_bench_synthetic.py --benchmark-group-by=group -q
records/s = N / mean time, printed in extra_info. `generate` gives arrays + truth (the batched path used by
training and instruction data); `generate_records` adds Record objects with per-lead annotations.
Runs with one and two torch threads (on a machine shared with other jobs the two-thread runs suffer most).
"""
from __future__ import annotations

import itertools

import pytest
import torch

from heartfast.signal.synthetic import generate, generate_records

N = 500
_seeds = itertools.count()


@pytest.fixture(params=[1, 2], ids=lambda t: f"{t}-threads")
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.benchmark(group="synthetic 10 s 500 Hz 12-lead")
@pytest.mark.parametrize("noise", [1.0, 0.0])
def test_generate_arrays(benchmark, noise, threads):
    batch = benchmark.pedantic(lambda: generate(N, seed=next(_seeds), noise=noise), rounds=5, warmup_rounds=1)
    assert batch.signals.shape == (N, 12, 5000)
    benchmark.extra_info["threads"] = threads
    benchmark.extra_info["records_per_s"] = round(N / benchmark.stats.stats.mean, 1)


@pytest.mark.benchmark(group="synthetic 10 s 500 Hz 12-lead")
def test_generate_records(benchmark, threads):
    records = benchmark.pedantic(lambda: generate_records(N, seed=next(_seeds)), rounds=3, warmup_rounds=1)
    assert len(records) == N
    benchmark.extra_info["records_per_s"] = round(N / benchmark.stats.stats.mean, 1)
