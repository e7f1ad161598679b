"""The `Record`: one ECG recording with everything the later stages need.

Signals are float32 [leads, samples] in millivolts with canonical lead names. Labels carry their
vocabulary (PTB-XL SCP codes with likelihoods, Challenge SNOMED codes, LUDB diagnoses, synthetic
findings in SCP terms). Annotations hold expert (or synthetic ground-truth) fiducial points per lead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LEADS_12: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Fiducial point names used by annotations and measurements (sample indices).
FIDUCIALS: tuple[str, ...] = (
    "P_on", "P_peak", "P_off", "QRS_on", "QRS_peak", "QRS_off", "T_on", "T_peak", "T_off",
)

_LEAD_ALIASES = {
    "mlii": "II", "mli": "I", "mliii": "III", "ml2": "II", "d1": "I", "d2": "II", "d3": "III",
    "ecg1": None, "ecg2": None,  # anonymous channels: refused below with a clear message
}


class ECGDataError(ValueError):
    """Bad input data; the message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def canonical_lead(name: str, path: str | Path | None = None, allow_unnamed: bool = False) -> str:
    """Map a lead name as databases spell it ('i', 'MLII', 'avr', 'V1 ') to its canonical form.

    Holter databases (QTDB, MIT-BIH) name some channels only 'ECG1' or by a bipolar placement ('D4', 'CM5');
    with `allow_unnamed` such names are kept as written instead of refused.
    """
    key = re.sub(r"[\s_\-]", "", name).lower()
    if key in _LEAD_ALIASES and _LEAD_ALIASES[key] is not None:
        return _LEAD_ALIASES[key]
    for lead in LEADS_12:
        if key == lead.lower():
            return lead
    if re.fullmatch(r"v[1-9]r?", key) or key in ("x", "y", "z", "vx", "vy", "vz"):
        return key.upper()  # extra precordial / Frank leads (V7-V9, V3R, X/Y/Z) keep a stable name
    if allow_unnamed and name.strip():
        return name.strip()
    if key in _LEAD_ALIASES:
        raise ECGDataError(path, f"lead name {name!r} does not say which lead it is")
    raise ECGDataError(path, f"unknown lead name {name!r}")


@dataclass(frozen=True)
class Label:
    """One diagnostic statement about a record."""

    code: str                        # "NORM", "426783006", "sinus_rhythm"
    system: str                      # "scp" | "snomed" | "ludb"
    description: str = ""            # English name ("normal ECG")
    likelihood: float | None = None  # PTB-XL: 0-100 (0 = unknown); None where the database has none
    kinds: tuple[str, ...] = ()      # SCP statement kinds: "diagnostic", "form", "rhythm"
    superclass: str = ""             # PTB-XL diagnostic superclass: NORM, MI, STTC, CD, HYP
    subclass: str = ""               # PTB-XL diagnostic subclass


@dataclass
class Annotations:
    """Fiducial points (sample indices, sorted) per lead, and beat labels where a database has them."""

    waves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # lead -> fiducial -> samples
    beat_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    beat_symbols: list[str] = field(default_factory=list)
    annotated_range: tuple[int, int] | None = None   # samples [start, stop) that were annotated


@dataclass
class Record:
    """One ECG recording: signal in mV [leads, samples], metadata, labels, report, annotations."""

    id: str
    signal: np.ndarray
    fs: float
    leads: tuple[str, ...]
    database: str = "wfdb"
    patient_id: str | None = None
    age: float | None = None          # years; PTB-XL's 300 (over 89) is stored as 90 with age_over_89
    sex: str | None = None            # "M" | "F"
    labels: list[Label] = field(default_factory=list)
    report: str = ""
    fold: int | None = None
    split: str | None = None          # "train" | "val" | "test"
    annotations: Annotations | None = None
    path: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples by (any spelling of) its name."""
        return self.signal[self.leads.index(canonical_lead(name, self.path))]

    def to_12_leads(self) -> np.ndarray:
        """Signal in the standard 12-lead order; missing leads are zero rows (Beat's rule)."""
        out = np.zeros((len(LEADS_12), self.n_samples), dtype=np.float32)
        for i, name in enumerate(LEADS_12):
            if name in self.leads:
                out[i] = self.signal[self.leads.index(name)]
        return out
