"""Dataset shards: round trip, checksums, resumable and interruption-safe `prepare`, bad records skipped."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import heartfast.data.prepare as prepare_module
from heartfast.data.prepare import prepare
from heartfast.data.shards import ShardDataset, read_manifest
from heartfast.io.record import ECGDataError
from heartfast.io.sources import list_records

CINC = ["E07500", "E07501", "JS20000", "JS20001", "HR06000"]


@pytest.fixture
def source(shared_data, tmp_path) -> Path:
    """Five Challenge records plus one whose signal file is missing (sorted fourth: 'HR99999')."""
    folder = tmp_path / "source"
    folder.mkdir()
    for name in CINC:
        for ext in (".hea", ".mat"):
            shutil.copy(shared_data / "cinc2021" / (name + ext), folder / (name + ext))
    header = (folder / "HR06000.hea").read_text().replace("HR06000", "HR99999")
    (folder / "HR99999.hea").write_text(header)
    return folder


def test_round_trip_keeps_signals_and_metadata(source, tmp_path):
    result = prepare(source, tmp_path / "out", fs=500, shard_size=2, progress=False)
    assert result.records == 5 and result.shards_written == 3 and result.shards_skipped == 0
    assert [(b["id"], b["path"]) for b in result.bad] == [("HR99999", str(source / "HR99999.mat"))]
    assert "signal file missing" in result.bad[0]["problem"]
    dataset = ShardDataset(tmp_path / "out")
    originals = {ref.id: ref.load() for ref in list_records(source) if ref.id != "HR99999"}
    assert sorted(r.id for r in dataset) == sorted(originals)
    for index in (4, 0, 2):   # random access
        record = dataset[index]
        original = originals[record.id]
        np.testing.assert_array_equal(record.signal, original.signal)
        assert (record.labels, record.age, record.sex, record.leads) == \
            (original.labels, original.age, original.sex, original.leads)
        assert dataset.signal(index).base is not None   # a view into the memory-mapped shard


def test_annotations_survive(shared_data, tmp_path):
    src = tmp_path / "ludb"
    src.mkdir()
    for file in (shared_data / "ludb" / "data").glob("1.*"):
        shutil.copy(file, src / file.name)
    prepare(src, tmp_path / "out", fs=500, shard_size=4, progress=False)
    original = list_records(src)[0].load()
    record = ShardDataset(tmp_path / "out")[0]
    assert record.annotations.annotated_range == original.annotations.annotated_range
    for lead, waves in original.annotations.waves.items():
        for name, points in waves.items():
            np.testing.assert_array_equal(record.annotations.waves[lead][name], points)


def test_damaged_shard_is_detected_and_redone(source, tmp_path):
    out = tmp_path / "out"
    prepare(source, out, fs=500, shard_size=2, progress=False)
    npy = out / "shard-00001.npy"
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))
    with pytest.raises(ECGDataError, match="checksum mismatch") as info:
        ShardDataset(out)
    assert info.value.path == str(npy)
    again = prepare(source, out, fs=500, shard_size=2, progress=False)
    assert (again.shards_written, again.shards_skipped, again.records) == (1, 2, 5)
    assert len(again.bad) == 1            # the bad record of a skipped shard is still reported
    assert len(ShardDataset(out)) == 5


def test_interrupted_run_resumes_without_redoing_finished_shards(source, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_write = prepare_module.write_shard
    calls = []

    def interrupted_write(folder, index, records):
        calls.append(index)
        if index == 1:
            (folder / ".shard-00001.npy.tmp").write_bytes(b"half written")   # what a crash leaves
            raise KeyboardInterrupt
        return real_write(folder, index, records)

    monkeypatch.setattr(prepare_module, "write_shard", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, out, fs=500, shard_size=2, progress=False)
    manifest = read_manifest(out)
    assert [e["index"] for e in manifest["shards"]] == [0]
    first = (out / "shard-00000.npy").stat().st_mtime_ns
    monkeypatch.setattr(prepare_module, "write_shard", real_write)
    result = prepare(source, out, fs=500, shard_size=2, progress=False)
    assert (result.shards_skipped, result.shards_written, result.records) == (1, 2, 5)
    assert (out / "shard-00000.npy").stat().st_mtime_ns == first
    assert len(ShardDataset(out)) == 5


def test_other_settings_refuse_to_mix(source, tmp_path):
    prepare(source, tmp_path / "out", fs=500, shard_size=2, progress=False)
    with pytest.raises(ECGDataError, match=r"shard_size: 2 -> 3"):
        prepare(source, tmp_path / "out", fs=500, shard_size=3, progress=False)


def test_manifest_lists_checksums(source, tmp_path):
    prepare(source, tmp_path / "out", fs=500, shard_size=4, progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    files = manifest["shards"][0]["files"]
    assert set(files) == {"shard-00000.npy", "shard-00000.jsonl"}
    assert all(len(digest) == 64 for digest in files.values())


def test_resampling_moves_signal_and_annotations(shared_data, tmp_path):
    pytest.importorskip("heartfast.signal.filters")
    src = tmp_path / "ludb"
    src.mkdir()
    for file in (shared_data / "ludb" / "data").glob("1.*"):
        shutil.copy(file, src / file.name)
    prepare(src, tmp_path / "out", fs=250, shard_size=4, progress=False)
    original = list_records(src)[0].load()
    record = ShardDataset(tmp_path / "out")[0]
    assert record.fs == 250 and record.signal.shape == (12, 2500) and record.extra["source_fs"] == 500
    np.testing.assert_allclose(record.signal[1, 1000:1500], original.signal[1, 2000:3000:2], atol=0.05)
    qrs = original.annotations.waves["II"]["QRS_peak"]
    np.testing.assert_array_equal(record.annotations.waves["II"]["QRS_peak"], np.rint(qrs / 2).astype(np.int64))


def test_synthetic_source(tmp_path):
    pytest.importorskip("heartfast.signal.synthetic")
    result = prepare("synthetic:20:3", tmp_path / "out", fs=500, shard_size=8, progress=False)
    assert (result.records, result.shards_written, result.bad) == (20, 3, [])
    dataset = ShardDataset(tmp_path / "out")
    fresh = list_records("synthetic:20:3")[13].load()
    np.testing.assert_array_equal(dataset[13].signal, fresh.signal)   # deterministic per seed
    assert dataset[13].labels == fresh.labels and dataset[13].database == "synthetic"


def test_a_prepared_folder_is_a_source(tmp_path):
    from heartfast.data.prepare import prepare
    from heartfast.io.sources import list_records

    prepare("synthetic:3:4", tmp_path, fs=250, progress=False)
    refs = list_records(tmp_path)
    direct = list_records("synthetic:3:4")
    assert [r.id for r in refs] == [r.id for r in direct]
    record = refs[1].load()
    assert record.fs == 250 and record.extra["truth"] == direct[1].load().extra["truth"]
