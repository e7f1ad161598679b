"""Damaged copies of real records → ECGDataError naming the file and the problem."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from heartfast.io.ludb import read_ludb
from heartfast.io.record import ECGDataError
from heartfast.io.sources import list_records
from heartfast.io.wfdb_reader import read_wfdb

PTBXL_RECORD = "ptb-xl/records100/00000/00001_lr"


@pytest.fixture
def record(shared_data, tmp_path) -> Path:
    """A fresh copy of PTB-XL record 1 (format 16, 12 leads); returns its path without extension."""
    for ext in (".hea", ".dat"):
        shutil.copy(shared_data / (PTBXL_RECORD + ext), tmp_path / f"00001_lr{ext}")
    return tmp_path / "00001_lr"


def _raises(path: Path, problem: str, named: Path) -> None:
    with pytest.raises(ECGDataError, match=problem) as info:
        read_wfdb(path)
    assert info.value.path == str(named)


def _edit_header(record: Path, old: str, new: str) -> None:
    header = record.with_suffix(".hea")
    header.write_text(header.read_text().replace(old, new, 1))


def test_intact_copy_reads(record):
    assert read_wfdb(record).signal.shape == (12, 1000)


def test_missing_dat(record):
    record.with_suffix(".dat").unlink()
    _raises(record, "signal file missing", record.with_suffix(".dat"))


def test_truncated_signal(record):
    dat = record.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:10_000])
    _raises(record, r"truncated signal: 416 samples per lead, header says 1000", dat)


def test_corrupt_header(record):
    _edit_header(record, "00001_lr 12 100 1000", "00001_lr twelve 100 1000")
    _raises(record, "corrupt header: number of signals 'twelve'", record.with_suffix(".hea"))


def test_header_with_fewer_signal_lines(record):
    header = record.with_suffix(".hea")
    header.write_text("\n".join(header.read_text().splitlines()[:5]))
    _raises(record, "announces 12 signals, found 4", header)


def test_missing_header(record):
    record.with_suffix(".hea").unlink()
    _raises(record, "header file not found", record.with_suffix(".hea"))


def test_nan_samples(record):
    dat = record.with_suffix(".dat")
    samples = np.fromfile(dat, dtype="<i2")
    samples[12 * 500 + 3] = -32768            # WFDB's 'no sample' value, lead aVR at t = 500
    samples.tofile(dat)
    _raises(record, r"lead 'AVR' has 1 missing \(NaN\) samples", dat)


def test_unknown_lead_name(record):
    _edit_header(record, " V6", " FOO")
    _raises(record, "unknown lead name 'FOO'", record.with_suffix(".hea"))


def test_units_that_are_not_voltage(record):
    _edit_header(record, "1000.0(0)/mV", "1000.0(0)/mmHg")
    _raises(record, "units 'mmHg', not a voltage", record.with_suffix(".hea"))


def test_microvolt_units_are_converted(record):
    reference = read_wfdb(record).signal
    header = record.with_suffix(".hea")
    header.write_text(header.read_text().replace("1000.0(0)/mV", "1.0(0)/uV"))
    np.testing.assert_allclose(read_wfdb(record).signal, reference, rtol=1e-6)


def test_empty_folder(tmp_path):
    with pytest.raises(ECGDataError, match="no ECG records found") as info:
        list_records(tmp_path)
    assert info.value.path == str(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(ECGDataError, match="no such folder or WFDB record"):
        list_records(tmp_path / "nothing")


def test_ludb_missing_lead_annotation(shared_data, tmp_path):
    for file in (shared_data / "ludb" / "data").glob("1.*"):
        shutil.copy(file, tmp_path / file.name)
    (tmp_path / "1.ii").unlink()
    with pytest.raises(ECGDataError, match="annotation file missing") as info:
        read_ludb(tmp_path / "1")
    assert info.value.path == str(tmp_path / "1.ii")
