"""Database readers on the real PhysioNet records in ../shared/data, checked against their own files."""
from __future__ import annotations

import ast
import csv
from collections import Counter

import numpy as np
import pytest
import wfdb

from heartfast.io.challenge import read_challenge
from heartfast.io.ludb import LUDB_LEAD_FILES, read_ludb
from heartfast.io.mitbih import read_mitbih
from heartfast.io.ptbxl import PtbXl
from heartfast.io.qtdb import read_qtdb
from heartfast.io.record import FIDUCIALS, LEADS_12
from heartfast.io.sources import count_records, list_records
from heartfast.io.wfdb_reader import read_wfdb


def _plausible_mv(signal: np.ndarray) -> None:
    assert signal.dtype == np.float32
    assert 0.02 < float(np.median(signal.std(axis=1))) < 2.0      # mV, not µV or ADC units
    assert float(np.abs(signal).max()) < 20.0


@pytest.mark.parametrize("record", ["ptb-xl/records100/00000/00001_lr", "ptb-xl/records500/00000/00001_hr",
                                    "mitdb/100", "qtdb/sel116", "cinc2021/E07500", "ludb/data/7"])
def test_signal_matches_wfdb_rdrecord(shared_data, record):
    """Own decoder (formats 16, 212, .mat with byte offset) equals wfdb's physical signal."""
    ours = read_wfdb(shared_data / record)
    theirs = wfdb.rdrecord(str(shared_data / record))
    assert ours.signal.shape == (theirs.n_sig, theirs.sig_len)
    np.testing.assert_allclose(ours.signal, theirs.p_signal.T, rtol=0, atol=1e-6)
    assert ours.fs == theirs.fs
    _plausible_mv(ours.signal)


def test_ptbxl_record_1_matches_csv(shared_data):
    record = PtbXl(shared_data / "ptb-xl").read("1")
    assert record.leads == LEADS_12 and record.fs == 100 and record.signal.shape == (12, 1000)
    assert (record.age, record.sex, record.patient_id) == (56.0, "F", "15709")   # csv sex 1 = female
    assert record.report == "sinusrhythmus periphere niederspannung"
    assert {(lab.code, lab.likelihood) for lab in record.labels} == {("NORM", 100.0), ("LVOLT", 0.0), ("SR", 0.0)}
    norm = next(lab for lab in record.labels if lab.code == "NORM")
    assert (norm.system, norm.description, norm.kinds, norm.superclass) == ("scp", "normal ECG", ("diagnostic",), "NORM")
    assert next(lab for lab in record.labels if lab.code == "SR").kinds == ("rhythm",)
    assert (record.fold, record.split) == (3, "train")
    _plausible_mv(record.signal)


def test_ptbxl_all_rows_follow_csv(shared_data):
    db = PtbXl(shared_data / "ptb-xl")
    with open(shared_data / "ptb-xl" / "ptbxl_database.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    splits = Counter()
    for row in rows[::37]:
        record = db.read(str(int(row["ecg_id"])))
        assert record.sex == ("M" if row["sex"] == "0" else "F")
        assert {lab.code: lab.likelihood for lab in record.labels} == ast.literal_eval(row["scp_codes"])
        fold = int(row["strat_fold"])
        assert record.split == {9: "val", 10: "test"}.get(fold, "train")
    for row in rows:
        splits[{"9": "val", "10": "test"}.get(row["strat_fold"], "train")] += 1
    assert splits["val"] > 0 and splits["test"] > 0


def test_ptbxl_both_rates_agree(shared_data):
    low, high = PtbXl(shared_data / "ptb-xl", 100), PtbXl(shared_data / "ptb-xl", 500)
    ids = high.available_ids()
    assert 0 < len(ids) < len(low.available_ids())
    a, b = low.read(ids[0]), high.read(ids[0])
    assert b.fs == 500 and b.signal.shape == (12, 5000)
    # the 100 Hz file is the 500 Hz one decimated: lead II agrees after averaging blocks of 5
    coarse = b.signal[1].reshape(-1, 5).mean(axis=1)
    assert np.corrcoef(coarse, a.signal[1])[0, 1] > 0.95


def test_ptbxl_age_300_means_over_89(shared_data, tmp_path):
    src = shared_data / "ptb-xl"
    with open(src / "ptbxl_database.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader)[:2], reader.fieldnames
    rows[0]["age"] = "300.0"
    with open(tmp_path / "ptbxl_database.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "scp_statements.csv").write_bytes((src / "scp_statements.csv").read_bytes())
    (tmp_path / "records100").symlink_to(src / "records100")
    records = [ref.load() for ref in list_records(tmp_path)]
    assert [r.age for r in records] == [90.0, float(rows[1]["age"])]
    assert records[0].extra["age_over_89"] is True and "age_over_89" not in records[1].extra


def test_ludb_record_1_annotations_and_diagnoses(shared_data):
    path = shared_data / "ludb" / "data" / "1"
    record = read_ludb(path, shared_data / "ludb" / "ludb.csv")
    assert record.leads == LEADS_12 and record.fs == 500 and (record.age, record.sex) == (51.0, "F")
    for ext, lead in zip(LUDB_LEAD_FILES, LEADS_12):
        ann = wfdb.rdann(str(path), ext)
        symbols = Counter(ann.symbol)
        waves = record.annotations.waves[lead]
        assert set(waves) <= set(FIDUCIALS)
        assert (len(waves["P_peak"]), len(waves["QRS_peak"]), len(waves["T_peak"])) == \
            (symbols["p"], symbols["N"], symbols["t"])
        assert len(waves["QRS_on"]) + len(waves["P_on"]) + len(waves["T_on"]) == symbols["("]
        assert np.all(waves["QRS_on"] < waves["QRS_peak"]) and np.all(waves["QRS_peak"] < waves["QRS_off"])
    assert Counter(wfdb.rdann(str(path), "i").symbol)["N"] == 6
    start, stop = record.annotations.annotated_range
    assert 0 < start < stop <= record.n_samples
    descriptions = {lab.description for lab in record.labels}
    assert {"Sinus bradycardia", "Left ventricular hypertrophy"} <= descriptions
    assert all(lab.system == "ludb" for lab in record.labels)


def test_ludb_diagnoses_from_header_without_csv(shared_data):
    with_csv = read_ludb(shared_data / "ludb" / "data" / "1", shared_data / "ludb" / "ludb.csv")
    from_header = read_ludb(shared_data / "ludb" / "data" / "1")
    assert {lab.code for lab in from_header.labels} == {lab.code for lab in with_csv.labels}


def test_mitbih_100_beats(shared_data):
    record = read_mitbih(shared_data / "mitdb" / "100")
    assert record.leads == ("II", "V5") and record.fs == 360 and record.n_samples == 650000
    counts = Counter(record.annotations.beat_symbols)
    assert (counts["N"], counts["A"], counts["V"]) == (2239, 33, 1) and sum(counts.values()) == 2273
    assert np.all(np.diff(record.annotations.beat_samples) > 0)
    assert (record.age, record.sex) == (69.0, "M")
    _plausible_mv(record.signal)


def test_qtdb_manual_boundaries(shared_data):
    record = read_qtdb(shared_data / "qtdb" / "sel100")
    ann = wfdb.rdann(str(shared_data / "qtdb" / "sel100"), "q1c")
    waves = record.annotations.waves["all"]
    symbols = Counter(ann.symbol)
    assert (len(waves["P_peak"]), len(waves["QRS_peak"]), len(waves["T_peak"])) == (symbols["p"], symbols["N"], symbols["t"])
    assert len(waves["T_off"]) == symbols["t"] and len(waves.get("T_on", [])) < symbols["t"]   # q1c: T onsets mostly unmarked
    assert record.annotations.annotated_range == (int(ann.sample.min()), int(ann.sample.max()) + 1)
    assert len(record.annotations.beat_samples) == len(wfdb.rdann(str(shared_data / "qtdb" / "sel100"), "atr").sample)
    assert record.leads == ("II", "V5") and record.fs == 250


def test_challenge_header_fields(shared_data):
    record = read_challenge(shared_data / "cinc2021" / "E07500")
    assert [(lab.code, lab.system) for lab in record.labels] == [("67741000119109", "snomed"), ("426177001", "snomed")]
    assert record.labels[1].description == "sinus bradycardia"
    assert (record.age, record.sex, record.leads, record.fs) == (78.0, "M", LEADS_12, 500)
    _plausible_mv(record.signal)


def test_folder_detection_and_cheap_count(shared_data):
    refs = list_records(shared_data)
    by_db = Counter(ref.database for ref in refs)
    assert by_db == {"ptb-xl": 400, "ludb": 100, "cinc": 50, "qtdb": 6, "mitdb": 1}
    assert count_records(shared_data / "cinc2021") == 50
    assert [r.id for r in list_records(shared_data / "mitdb" / "100.hea")] == ["100"]
    assert len({ref.path for ref in refs}) == len(refs)


def test_formats_read_through_wfdb_fallback(shared_data, tmp_path):
    """A format our numpy decoder does not handle (61: big-endian 16 bit) goes through wfdb, same values."""
    src = shared_data / "ptb-xl" / "records100" / "00000" / "00001_lr"
    samples = np.fromfile(f"{src}.dat", dtype="<i2")
    samples.astype(">i2").tofile(tmp_path / "00001_lr.dat")
    header = (shared_data / "ptb-xl" / "records100" / "00000" / "00001_lr.hea").read_text()
    (tmp_path / "00001_lr.hea").write_text(header.replace(".dat 16 ", ".dat 61 "))
    np.testing.assert_array_equal(read_wfdb(tmp_path / "00001_lr").signal, read_wfdb(src).signal)


def test_single_ptbxl_record_keeps_its_metadata(shared_data):
    for path, fs in (("records500/00000/00001_hr.hea", 500), ("records100/00000/00001_lr", 100)):
        (ref,) = list_records(shared_data / "ptb-xl" / path)
        record = ref.load()
        assert (record.id, record.database, record.fs, record.age) == ("1", "ptb-xl", fs, 56.0)


def test_synthetic_source_ids_match_the_records():
    from heartfast.io.sources import list_records

    refs = list_records("synthetic:3:5")
    assert [ref.id for ref in refs] == [ref.load().id for ref in refs]
