"""Delineation and the 14 GEM measurements on the GPU (heartfast.signal: batched torch, the same code as CPU).

Check: on 64 synthetic 12-lead records (10 s, 500 Hz), the CUDA fiducial points equal the CPU ones
except for a small share moved by a sample or two where float rounding tips a threshold.
Timing: records/s of `delineate` (R-peaks included) and of `measure` (delineation + per-lead features)
on batches of 256 records, and on one CPU thread for the same batch size as the comparison.

    python3 benchmarks/gpu_suite.py --only measure
"""
from __future__ import annotations

import time

import torch

from heartfast.signal.delineate import delineate
from heartfast.signal.measure import measure
from heartfast.signal.synthetic import generate

FS = 500.0


def check(suite) -> None:
    signals = generate(64, seed=3).signals.float()
    cpu = delineate(signals, FS)
    gpu = delineate(signals.cuda(), FS)
    for name, want in cpu.points.items():
        got = gpu.points[name].cpu()
        present = (want >= 0) | (got >= 0)
        close = ((got - want).abs() <= 2) & (got >= 0) & (want >= 0)
        share = float(close[present].float().mean()) if present.any() else 1.0
        suite.expect(f"delineate {name} cuda vs cpu within 2 samples", share >= 0.98, f"{100 * share:.2f}% of points")


def _cpu_records_per_s(signals: torch.Tensor) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        delineate(signals, FS)
        return signals.shape[0] / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def run(suite) -> None:
    check(suite)
    signals = generate(256, seed=4).signals.float()
    gpu = signals.cuda()
    case = "delineate 256 records x 12 leads x 10 s @500 Hz"
    ms = suite.time(case, "heartfast torch (cuda)", lambda: delineate(gpu, FS))
    if ms:
        suite.timings[-1].extra["records_per_s"] = round(256 / ms * 1e3, 1)
    rate = _cpu_records_per_s(signals[:32])
    suite.record(case, "torch cpu, 1 thread (same code; 32 of the records, scaled to 256)", 256 / rate * 1e3,
                 records_per_s=round(rate, 1))
    ms = suite.time("measure 256 records (delineation + 14 GEM features)", "heartfast torch (cuda)",
                    lambda: measure(gpu, FS))
    if ms:
        suite.timings[-1].extra["records_per_s"] = round(256 / ms * 1e3, 1)
