"""Read one WFDB record into a `Record`: signal in mV, canonical lead names, strict checks.

Formats 16, 212, 24, 32 and 80 (one sample per frame) are decoded here with numpy straight from the
file; anything else falls back to `wfdb.rdrecord`. Every problem (missing or short signal file,
invalid samples, unknown units or lead names) raises ECGDataError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from heartfast.io.header import Header, SignalSpec, read_header
from heartfast.io.record import ECGDataError, Record, canonical_lead

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}
_BYTES_PER_SAMPLE = {"16": 2, "24": 3, "32": 4, "80": 1}   # 212 packs 2 samples in 3 bytes
_INVALID = {"16": -(2 ** 15), "212": -(2 ** 11), "24": -(2 ** 23), "32": -(2 ** 31), "80": -128}


def read_wfdb(path: str | Path, database: str = "wfdb", header: Header | None = None,
              allow_unnamed_leads: bool = False) -> Record:
    """The record at `path` (.hea file or path without extension) with signal float32 [leads, samples] mV.

    `allow_unnamed_leads` keeps Holter channel names such as 'ECG1' or 'D4' (QTDB, MIT-BIH) as written.
    """
    header = header or read_header(path)
    leads = tuple(canonical_lead(s.description, header.path, allow_unnamed_leads) for s in header.signals)
    if len(set(leads)) != len(leads):
        raise ECGDataError(header.path, f"duplicate lead names {leads}")
    signal = read_signal(header)
    return Record(id=header.name, signal=signal, fs=header.fs, leads=leads, database=database,
                  path=str(header.record_path))


def read_signal(header: Header) -> np.ndarray:
    """Decode all signals of `header` to float32 [leads, samples] in mV."""
    digital = np.empty((len(header.signals), header.n_samples), dtype=np.int64)
    for file, rows in _rows_by_file(header.signals).items():
        digital[rows] = _read_file(header, file, [header.signals[i] for i in rows])
    out = np.empty(digital.shape, dtype=np.float32)
    for i, spec in enumerate(header.signals):
        invalid = digital[i] == _INVALID[spec.fmt] if spec.fmt in _INVALID else np.zeros(0, dtype=bool)
        if invalid.any():
            raise ECGDataError(_data_path(header, spec.file),
                               f"lead {spec.description!r} has {int(invalid.sum())} missing (NaN) samples")
        out[i] = (digital[i] - spec.baseline) * (_mv_per_unit(header, spec) / spec.gain)
    if not np.isfinite(out).all():
        raise ECGDataError(header.path, "signal contains NaN or infinite values")
    return out


def _rows_by_file(signals: tuple[SignalSpec, ...]) -> dict[str, list[int]]:
    """Signal rows per signal file, in header order (a file's signals are interleaved in it)."""
    rows: dict[str, list[int]] = {}
    for i, spec in enumerate(signals):
        rows.setdefault(spec.file, []).append(i)
    return rows


def _data_path(header: Header, file: str) -> Path:
    return header.path.parent / file


def _mv_per_unit(header: Header, spec: SignalSpec) -> float:
    scale = _UNIT_TO_MV.get(spec.units.lower())
    if scale is None:
        raise ECGDataError(header.path, f"lead {spec.description!r} has units {spec.units!r}, not a voltage")
    return scale


def _read_file(header: Header, file: str, specs: list[SignalSpec]) -> np.ndarray:
    """Digital samples [len(specs), n_samples] of the signals stored (interleaved) in one file."""
    path = _data_path(header, file)
    if not path.is_file():
        raise ECGDataError(path, f"signal file missing (named in {header.path.name})")
    fmt = specs[0].fmt
    simple = all(s.fmt == fmt and s.samples_per_frame == 1 and s.byte_offset == specs[0].byte_offset
                 for s in specs)
    if not simple or fmt not in (*_BYTES_PER_SAMPLE, "212"):
        return _read_with_wfdb(header, specs)
    n_values = header.n_samples * len(specs)
    raw = np.fromfile(path, dtype=np.uint8, offset=specs[0].byte_offset)
    values = _decode(raw, fmt, n_values)
    if values.size < n_values:
        raise ECGDataError(path, f"truncated signal: {values.size // len(specs)} samples per lead, "
                                 f"header says {header.n_samples}")
    return values[:n_values].reshape(header.n_samples, len(specs)).T


def _decode(raw: np.ndarray, fmt: str, n_values: int) -> np.ndarray:
    if fmt == "212":
        n_pairs = min(raw.size // 3, (n_values + 1) // 2)
        b = raw[:n_pairs * 3].reshape(-1, 3).astype(np.int64)
        pair = np.empty((n_pairs, 2), dtype=np.int64)
        pair[:, 0] = b[:, 0] | ((b[:, 1] & 0x0F) << 8)
        pair[:, 1] = b[:, 2] | ((b[:, 1] & 0xF0) << 4)
        pair -= (pair >= 2048) * 4096
        return pair.reshape(-1)[:n_values]
    width = _BYTES_PER_SAMPLE[fmt]
    usable = raw[:min(raw.size // width, n_values) * width]
    if fmt == "24":
        b = usable.reshape(-1, 3).astype(np.int64)
        values = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return values - (values >= 2 ** 23) * 2 ** 24
    if fmt == "80":
        return usable.astype(np.int64) - 128
    return usable.view("<i2" if fmt == "16" else "<i4").astype(np.int64)


def _read_with_wfdb(header: Header, specs: list[SignalSpec]) -> np.ndarray:
    import wfdb

    channels = [header.signals.index(s) for s in specs]
    try:
        rec = wfdb.rdrecord(str(header.record_path), channels=channels, physical=False,
                            smooth_frames=True)
    except Exception as exc:  # wfdb raises bare ValueError/IndexError on damaged files
        raise ECGDataError(header.path, f"cannot decode signal: {exc}") from None
    return rec.d_signal.T.astype(np.int64)
