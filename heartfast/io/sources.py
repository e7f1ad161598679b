"""Find the records of a source (folder, single record, `synthetic:N[:seed]`, or a folder prepared by
`heartfast data prepare`) and what reads each.

Listing is cheap (file names and metadata tables only); signals are read when a `RecordRef` is loaded.
A folder is walked recursively: a subtree holding `ptbxl_database.csv` is PTB-XL, one holding `ludb.csv`
is LUDB; elsewhere each header is classified by its sibling files (.q1c → QTDB, .i → LUDB, .atr →
MIT-BIH style) and its comments (`# Dx:` → Challenge); anything else is read as a generic WFDB record.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from heartfast.io.challenge import is_challenge_header, read_challenge
from heartfast.io.header import read_header
from heartfast.io.ludb import read_ludb
from heartfast.io.mitbih import read_mitbih
from heartfast.io.ptbxl import PTBXL_RATES, PtbXl, is_ptbxl
from heartfast.io.qtdb import read_qtdb
from heartfast.io.record import ECGDataError, Record
from heartfast.io.wfdb_reader import read_wfdb

_SYNTHETIC = re.compile(r"synthetic:(?P<n>\d+)(?::(?P<seed>\d+))?")
SYNTHETIC_CHUNK = 256   # records generated per vectorised call


@dataclass(frozen=True)
class RecordRef:
    """A record that can be read later: `ref.load()` returns the Record (or raises ECGDataError)."""

    id: str
    database: str
    path: str
    loader: Callable[[], Record] = field(repr=False, compare=False)

    def load(self) -> Record:
        return self.loader()


def list_records(source: str | Path, ptbxl_fs: int = 100) -> list[RecordRef]:
    """All records of `source` in a stable order; ECGDataError when it holds none."""
    text = str(source)
    synthetic = _SYNTHETIC.fullmatch(text)
    if synthetic:
        return _synthetic_refs(int(synthetic["n"]), int(synthetic["seed"] or 0))
    path = Path(source)
    if (path / "manifest.json").is_file():
        return _shard_refs(path)
    if path.is_dir():
        refs = list(_folder_refs(path, ptbxl_fs))
        if not refs:
            raise ECGDataError(path, "no ECG records found (no .hea files)")
        return refs
    header = path if path.suffix == ".hea" else path.with_name(path.name + ".hea")
    if not header.is_file():
        raise ECGDataError(path, "no such folder or WFDB record")
    return [_ptbxl_member(header) or _classify(header)]


def open_source(source: str | Path, ptbxl_fs: int = 100) -> Iterator[Record]:
    """Yield the Records of `source` one by one (errors of a bad record propagate)."""
    for ref in list_records(source, ptbxl_fs):
        yield ref.load()


def count_records(source: str | Path, ptbxl_fs: int = 100) -> int:
    """Number of records in `source` without reading any signal."""
    return len(list_records(source, ptbxl_fs))


def _shard_refs(folder: Path) -> list[RecordRef]:
    """Records of a prepared folder (memory-mapped shards; the one place io reads heartfast.data's format)."""
    from heartfast.data.shards import ShardDataset

    dataset = ShardDataset(folder)
    return [RecordRef(meta["id"], meta.get("database", "wfdb"), str(folder), lambda i=i: dataset[i])
            for i, meta in ((i, dataset.meta(i)) for i in range(len(dataset)))]


def _folder_refs(folder: Path, ptbxl_fs: int) -> Iterator[RecordRef]:
    if is_ptbxl(folder):
        yield from _ptbxl_refs(folder, ptbxl_fs)
        return
    ludb_csv = folder / "ludb.csv"
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    for entry in entries:
        if entry.is_file() and entry.name.endswith(".hea"):
            yield _classify(Path(entry.path), ludb_csv if ludb_csv.is_file() else None)
    for entry in entries:
        if entry.is_dir():
            if ludb_csv.is_file() and not (Path(entry.path) / "ludb.csv").exists():
                yield from _ludb_subtree(Path(entry.path), ludb_csv)
            else:
                yield from _folder_refs(Path(entry.path), ptbxl_fs)


def _ludb_subtree(folder: Path, csv_path: Path) -> Iterator[RecordRef]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".hea"):
                yield _classify(Path(root) / name, csv_path)


def _ptbxl_refs(folder: Path, fs: int) -> Iterator[RecordRef]:
    db = PtbXl(folder, fs)
    for ecg_id in db.available_ids():
        yield RecordRef(ecg_id, "ptb-xl", str(db.header_path(ecg_id).with_suffix("")),
                        lambda i=ecg_id: db.read(i))


def _ptbxl_member(header: Path) -> RecordRef | None:
    """A single record inside a PTB-XL folder (records100/00000/00001_lr) keeps its metadata."""
    for root in list(header.resolve().parents)[1:4]:
        if is_ptbxl(root):
            for fs in PTBXL_RATES:
                db = PtbXl(root, fs)
                ecg_id = db.id_for(header)
                if ecg_id is not None:
                    return RecordRef(ecg_id, "ptb-xl", str(header.with_suffix("")), lambda: db.read(ecg_id))
    return None


def _classify(header: Path, ludb_csv: Path | None = None) -> RecordRef:
    """Pick the reader for one header file from its sibling files and comments."""
    stem = header.with_suffix("")
    name = stem.name
    sibling = lambda ext: Path(f"{stem}.{ext}").is_file()  # noqa: E731
    if sibling("q1c"):
        return RecordRef(name, "qtdb", str(stem), lambda: read_qtdb(stem))
    if sibling("i") and sibling("v6"):
        return RecordRef(name, "ludb", str(stem), lambda: read_ludb(stem, ludb_csv))
    if sibling("atr"):
        return RecordRef(name, "mitdb", str(stem), lambda: read_mitbih(stem))
    if sibling("mat") and _has_dx(header):
        return RecordRef(name, "cinc", str(stem), lambda: read_challenge(stem))
    return RecordRef(name, "wfdb", str(stem), lambda: read_wfdb(stem))


def _has_dx(header: Path) -> bool:
    try:
        return is_challenge_header(read_header(header).comments)
    except ECGDataError:
        return True   # let the Challenge reader report the problem when the record is loaded


def _synthetic_refs(n: int, seed: int) -> list[RecordRef]:
    """Records from the synthetic generator, made SYNTHETIC_CHUNK at a time (vectorised) on first use."""
    if n <= 0:
        raise ECGDataError(f"synthetic:{n}", "number of synthetic records must be positive")

    from heartfast.signal.synthetic import generate_records, synthetic_record_id

    chunk_seed = lambda k: seed * 1_000_003 + k  # noqa: E731

    @lru_cache(maxsize=2)
    def chunk(k: int) -> list[Record]:
        return generate_records(min(SYNTHETIC_CHUNK, n - k * SYNTHETIC_CHUNK), seed=chunk_seed(k))

    return [RecordRef(synthetic_record_id(chunk_seed(i // SYNTHETIC_CHUNK), i % SYNTHETIC_CHUNK), "synthetic",
                      f"synthetic:{n}:{seed}", lambda i=i: chunk(i // SYNTHETIC_CHUNK)[i % SYNTHETIC_CHUNK])
            for i in range(n)]
