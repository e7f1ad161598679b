"""Delineation records/s: heartfast (12 leads, batched torch) vs NeuroKit2 ecg_delineate (one lead), same records.

    .venv/bin/python -m pytest benchmarks/test_bench_delineation.py --benchmark-group-by=group \
        --benchmark-timer=time.process_time -q

Input: 32 LUDB records (10 s, 12 leads, 500 Hz) from ../shared/data when present, else 32 synthetic ones.
Each round delineates all 32 with each implementation, so mean times compare directly (records/s =
32 / mean). heartfast delineates all 12 leads with R-peak detection included, in batches of 32;
NeuroKit2 runs ecg_clean + ecg_peaks + ecg_delineate on lead II (its usual single-lead use). Both run
on one CPU thread (NeuroKit2 is single-threaded; torch is pinned with torch.set_num_threads(1)), so the
ratio is per core; the process-time timer keeps other jobs on a shared machine out of the comparison.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from heartfast.evaluate.delineation import run_heartfast, run_neurokit
from heartfast.io.record import Record

N_RECORDS = 32
DATA = Path(os.environ.get("HEARTFAST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _records() -> list[Record]:
    ludb = DATA / "ludb"
    if ludb.is_dir():
        from heartfast.io.sources import list_records

        return [ref.load() for ref in list_records(ludb)[:N_RECORDS]]
    from heartfast.signal.synthetic import generate_records

    return generate_records(N_RECORDS, seed=0)


RECORDS = _records()


@pytest.mark.parametrize("impl", ["heartfast", "neurokit-dwt", "neurokit-prominence"])
def test_delineation_speed(benchmark, one_thread, impl):
    benchmark.group = f"delineation {N_RECORDS} records"
    if impl == "heartfast":
        run = lambda: run_heartfast(RECORDS, "II")  # noqa: E731
    else:
        run = lambda: run_neurokit(RECORDS, "II", impl.removeprefix("neurokit-"))  # noqa: E731
    run()  # warm-up (FFT plans, NeuroKit2 imports)
    result = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    benchmark.extra_info["records_per_s"] = N_RECORDS / benchmark.stats.stats.mean
    found = sum(len(p.get("QRS_on", [])) for p in result.points)
    assert found >= 8 * N_RECORDS, "each 10 s record has at least 8 beats"
