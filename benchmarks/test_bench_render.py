"""ECG images/s at 384 px: the batched torch renderer vs the matplotlib reference (one reused figure),
same records, same layouts and geometry, side by side in one run.

    .venv/bin/python -m pytest benchmarks/test_bench_render.py --benchmark-timer=time.process_time \
        --benchmark-group-by=group -q

Input: 32 real PTB-XL records at 500 Hz (10 s, 12 leads) from ../shared/data when present, else 32 from the
synthetic generator. Each round renders all 32 with each implementation (10 rounds after 2 warm-up ones),
so the mean times compare directly. "heartfast-out" draws into one reused output buffer (`out=`, the
counterpart of matplotlib's reused figure), "heartfast" into fresh memory each call (the OS then zeroes
~19 MB per call, which is a visible and noisy share of the time). Both run on one CPU thread (matplotlib
draws on one core; torch is pinned with torch.set_num_threads(1) for the measurement), so the ratio is per
core. The renderer is memory-bound (12x1 reads 7.7 MB of samples and writes 19 MB of images per round), so
on a shared machine its times swing more than matplotlib's: compare within one run, and repeat it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from heartfast.render.layout import LAYOUTS
from heartfast.render.reference import MatplotlibRenderer
from heartfast.render.renderer import ECGRenderer

N_RECORDS, FS, SIZE = 32, 500.0, 384
DATA = Path(os.environ.get("HEARTFAST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _records() -> np.ndarray:
    """[32, 12, 5000] mV: PTB-XL 500 Hz records (I..V6 order) or synthetic ones where the data is absent."""
    headers = sorted((DATA / "ptb-xl" / "records500").rglob("*_hr.hea"))[:N_RECORDS]
    if len(headers) == N_RECORDS:
        import wfdb

        signals = [wfdb.rdrecord(str(h.with_suffix(""))).p_signal.T[:, :5000] for h in headers]
        return np.ascontiguousarray(np.stack(signals), dtype=np.float32)
    from heartfast.signal.synthetic import generate_records

    return np.stack([r.to_12_leads()[:, :5000] for r in generate_records(N_RECORDS, seed=0, fs=FS)])


SIGNALS = _records()


@pytest.mark.parametrize("impl", ["heartfast", "heartfast-out", "matplotlib"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_render_speed(benchmark, one_thread, layout, impl):
    benchmark.group = f"render {layout} {SIZE}px"
    if impl == "matplotlib":
        renderer, signals = MatplotlibRenderer(layout, SIZE), SIGNALS
        draw = lambda: renderer(signals, FS)
    else:
        renderer, signals = ECGRenderer(layout, SIZE), torch.from_numpy(SIGNALS)
        buffer = renderer.buffer(N_RECORDS) if impl == "heartfast-out" else None
        draw = lambda: renderer(signals, FS, out=buffer)
    renderer(signals[:1], FS)  # figure / background and geometry caches
    images = benchmark.pedantic(draw, rounds=10, warmup_rounds=2)
    assert tuple(images.shape) == (N_RECORDS, 3, SIZE, SIZE)
    if benchmark.stats:  # None under --benchmark-disable (a smoke run)
        benchmark.extra_info["images_per_s"] = round(N_RECORDS / benchmark.stats.stats.mean, 1)
