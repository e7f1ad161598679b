"""WFDB annotation files → fiducial points and beat labels.

Wave annotations (LUDB per-lead files, QTDB .q1c) mark each P, QRS and T wave by its peak symbol
(`p`, `N`, `t`), optionally preceded by an onset `(` and followed by an offset `)`. Beat annotations
(.atr) carry one symbol per beat plus non-beat annotations (rhythm changes, noise) that are kept apart.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from heartfast.io.record import ECGDataError

_WAVE_NAMES = {"p": "P", "N": "QRS", "t": "T"}
# MIT-BIH beat annotation codes (the rest, e.g. '+' rhythm change or '~' noise, are not beats).
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


def read_annotation(record_path: str | Path, extension: str):
    """`wfdb.rdann` with errors that name the file."""
    import wfdb

    file = Path(f"{record_path}.{extension}")
    if not file.is_file():
        raise ECGDataError(file, "annotation file missing")
    try:
        return wfdb.rdann(str(record_path), extension)
    except Exception as exc:  # wfdb raises assorted errors on damaged files
        raise ECGDataError(file, f"cannot read annotations: {exc}") from None


def wave_fiducials(samples: np.ndarray, symbols: list[str]) -> dict[str, np.ndarray]:
    """Group `(` peak `)` sequences into the FIDUCIALS names (P_on, P_peak, ..., T_off).

    An onset belongs to a wave only when it directly precedes the peak; an offset only when it directly
    follows it (QTDB often leaves T onsets unmarked).
    """
    points: dict[str, list[int]] = {}
    for i, symbol in enumerate(symbols):
        wave = _WAVE_NAMES.get(symbol)
        if wave is None:
            continue
        points.setdefault(f"{wave}_peak", []).append(int(samples[i]))
        if i > 0 and symbols[i - 1] == "(":
            points.setdefault(f"{wave}_on", []).append(int(samples[i - 1]))
        if i + 1 < len(symbols) and symbols[i + 1] == ")":
            points.setdefault(f"{wave}_off", []).append(int(samples[i + 1]))
    return {name: np.asarray(sorted(v), dtype=np.int64) for name, v in points.items()}


def annotated_range(samples: np.ndarray) -> tuple[int, int] | None:
    """[first, last + 1) of the annotated samples, or None when there are none."""
    return (int(samples.min()), int(samples.max()) + 1) if samples.size else None


def beats(record_path: str | Path, extension: str = "atr") -> tuple[np.ndarray, list[str], list[tuple[int, str]]]:
    """Beat samples, beat symbols, and the non-beat annotations as (sample, symbol+aux note)."""
    ann = read_annotation(record_path, extension)
    aux = ann.aux_note or [""] * len(ann.symbol)
    is_beat = np.array([s in BEAT_SYMBOLS for s in ann.symbol], dtype=bool)
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = [s for s, b in zip(ann.symbol, is_beat) if b]
    other = [(int(samples[i]), (ann.symbol[i] + " " + aux[i].strip("\x00")).strip())
             for i in np.flatnonzero(~is_beat)]
    return samples[is_beat], symbols, other
