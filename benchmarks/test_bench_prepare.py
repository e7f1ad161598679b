"""`prepare` throughput on ../shared/data/ptb-xl vs a plain wfdb.rdrecord + scipy resample_poly loop.

Both read the 400 PTB-XL records at 100 Hz, resample them to 250 Hz and write the result to disk;
`prepare` also writes JSONL metadata, checksums and a manifest. Run:
    .venv/bin/python -m pytest benchmarks/test_bench_prepare.py --benchmark-group-by=group -q
records/s = 400 / mean time, printed in extra_info.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

PTBXL = Path(os.environ.get("HEARTFAST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "ptb-xl"
TARGET_FS = 250
pytestmark = pytest.mark.skipif(not PTBXL.is_dir(), reason=f"PTB-XL sample not found at {PTBXL}")


def _fresh_dirs(tmp_path: Path):
    counter = itertools.count()
    return lambda: ((tmp_path / f"run{next(counter)}",), {})


def _record_paths() -> list[str]:
    from heartfast.io.sources import list_records

    return [ref.path for ref in list_records(PTBXL)]


def _wfdb_scipy_loop(paths: list[str], out: Path) -> int:
    import wfdb
    from scipy.signal import resample_poly

    signals = []
    for path in paths:
        record = wfdb.rdrecord(path)
        signals.append(resample_poly(record.p_signal.T, TARGET_FS, int(record.fs), axis=-1).astype(np.float32))
    out.mkdir()
    np.save(out / "signals.npy", np.stack(signals))
    return len(signals)


def _heartfast_prepare(out: Path) -> int:
    from heartfast.data.prepare import prepare

    return prepare(PTBXL, out, fs=TARGET_FS, shard_size=512, progress=False).records


@pytest.mark.benchmark(group="prepare ptb-xl 400 records 100->250 Hz")
def test_wfdb_scipy_loop(benchmark, tmp_path):
    paths = _record_paths()
    n = benchmark.pedantic(lambda out: _wfdb_scipy_loop(paths, out), setup=_fresh_dirs(tmp_path),
                           rounds=3, warmup_rounds=1)
    assert n == 400
    benchmark.extra_info["records_per_s"] = round(n / benchmark.stats.stats.mean, 1)


@pytest.mark.benchmark(group="prepare ptb-xl 400 records 100->250 Hz")
def test_heartfast_prepare(benchmark, tmp_path):
    n = benchmark.pedantic(_heartfast_prepare, setup=_fresh_dirs(tmp_path), rounds=3, warmup_rounds=1)
    assert n == 400
    benchmark.extra_info["records_per_s"] = round(n / benchmark.stats.stats.mean, 1)
