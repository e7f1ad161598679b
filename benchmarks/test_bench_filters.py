"""heartfast.signal.filters (batched torch) vs scipy.signal on the same filters, side by side.

    .venv/bin/python -m pytest benchmarks/test_bench_filters.py --benchmark-group-by=group -q
Input: 64 records x 12 leads x 10 s at 500 Hz (float32 for torch, float64 for scipy, as each is used).
heartfast runs with torch's default thread count and with one thread (scipy is single-threaded): on a
machine shared with other jobs, torch's multi-threaded runs suffer most, and the one-thread row is the
like-for-like comparison.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from heartfast.signal.filters import highpass, lowpass, notch, resample

FS = 500
X = np.random.default_rng(0).standard_normal((64, 12, 10 * FS)).cumsum(-1) * 0.01
XT = torch.tensor(X, dtype=torch.float32)
HP = scipy.signal.butter(2, 0.5, "highpass", fs=FS, output="sos")
LP = scipy.signal.butter(4, 40, "lowpass", fs=FS, output="sos")
NOTCH = scipy.signal.iirnotch(50, 30, fs=FS)

CASES = {
    "resample 500->250": (lambda: resample(XT, FS, 250), lambda: scipy.signal.resample_poly(X, 1, 2, axis=-1)),
    "resample 500->360": (lambda: resample(XT, FS, 360), lambda: scipy.signal.resample_poly(X, 18, 25, axis=-1)),
    "highpass 0.5 Hz": (lambda: highpass(XT, FS, 0.5), lambda: scipy.signal.sosfiltfilt(HP, X, axis=-1)),
    "lowpass 40 Hz": (lambda: lowpass(XT, FS, 40), lambda: scipy.signal.sosfiltfilt(LP, X, axis=-1)),
    "notch 50 Hz": (lambda: notch(XT, FS, 50), lambda: scipy.signal.filtfilt(*NOTCH, X, axis=-1)),
}


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param or before)
    yield torch.get_num_threads()
    torch.set_num_threads(before)


@pytest.mark.parametrize("impl,threads", [("heartfast", None), ("heartfast-1-thread", 1), ("scipy", None)],
                         indirect=["threads"])
@pytest.mark.parametrize("case", list(CASES))
def test_filter_speed(benchmark, case, impl, threads):
    benchmark.group = case
    fn = CASES[case][1 if impl == "scipy" else 0]
    fn()  # filter design and caches
    out = benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    assert tuple(out.shape[:2]) == (64, 12)
    benchmark.extra_info["records_per_s"] = round(64 / benchmark.stats.stats.mean, 1)
