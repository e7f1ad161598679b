"""`heartfast data inspect|prepare|download` argument handling and output."""
from __future__ import annotations

import pytest

from heartfast.cli import main
from heartfast.data.shards import ShardDataset


def test_inspect_ptbxl_table(shared_data, capsys):
    assert main(["data", "inspect", str(shared_data / "ptb-xl"), "--limit", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "database", "fs", "leads", "duration", "labels", "report"]
    assert lines[1].split()[:7] == ["1", "ptb-xl", "100", "12", "(standard)", "10.0s", "NORM(100),"]
    assert "sinusrhythmus periphere niederspannung" in lines[1]
    assert lines[-1] == "3 of 400 records shown"


def test_inspect_reads_holter_channel_names(shared_data, capsys):
    assert main(["data", "inspect", str(shared_data / "qtdb")]) == 0
    out = capsys.readouterr().out
    assert "sel100    qtdb      250  II,V5" in out
    assert "sel16265  qtdb      250  ECG1,ECG2" in out and "ERROR" not in out


def test_inspect_shows_unreadable_records_and_goes_on(shared_data, tmp_path, capsys):
    import shutil

    source = shared_data / "ptb-xl" / "records100" / "00000"
    for name in ("00001_lr", "00002_lr"):
        for ext in (".hea", ".dat"):
            shutil.copy(source / (name + ext), tmp_path / (name + ext))
    bad = tmp_path / "00002_lr.hea"
    bad.write_text(bad.read_text().replace(" V1", " ECG1", 1))
    assert main(["data", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "00001_lr" in out and f"ERROR: {bad}: lead name 'ECG1'" in out


def test_inspect_empty_folder_fails_cleanly(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: no ECG records found (no .hea files)"


def test_prepare_then_inspect_shards(shared_data, tmp_path, capsys):
    out = tmp_path / "shards"
    args = ["data", "prepare", str(shared_data / "mitdb"), "--out", str(out), "--fs", "360", "--quiet"]
    assert main(args) == 0
    assert "1 records in" in capsys.readouterr().out
    assert len(ShardDataset(out)) == 1
    assert main(args) == 0
    assert "(0 shards written, 1 already done)" in capsys.readouterr().out
    assert main(["data", "inspect", str(out)]) == 0
    assert "100  mitdb     360  II,V5  1805.6s" in capsys.readouterr().out


def test_download_rejects_unknown_database(capsys):
    with pytest.raises(SystemExit):
        main(["data", "download", "mimic", "--to", "x"])
    assert "invalid choice: 'mimic'" in capsys.readouterr().err


def test_download_requires_destination(capsys):
    with pytest.raises(SystemExit):
        main(["data", "download", "ludb"])
    assert "--to" in capsys.readouterr().err


def test_download_offline_fails_with_one_line(tmp_path, capsys, monkeypatch):
    """PhysioNet pointed at a closed local port: wfdb's real downloader runs and fails at once."""
    from wfdb.io import download as wfdb_download

    monkeypatch.setattr(wfdb_download, "PN_CONTENT_URL", "http://127.0.0.1:9/")
    assert main(["data", "download", "qtdb", "--to", str(tmp_path / "qtdb")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: cannot download qtdb (PhysioNet qtdb, tested version 1.0.0) from http://127.0.0.1:9/")
    assert err.endswith("(no internet access?)")
