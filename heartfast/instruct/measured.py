"""Measurements as the item builders need them: named values with units, per lead or global.

Accepts what `heartfast.signal.measure.measure_record` returns (a `Measurements` whose `items` are
`Measurement(name, value, unit, lead, beats)`) as well as plain mappings, so builders can be driven by any
measurement source: {"pr_interval": 182}, {"qrs_amplitude": {"V1": 1.2, ...}}, objects with
`value`/`unit`/`lead` attributes, or a sequence of such objects with a `name`. NaN values are dropped.
Synthetic records carry exact ground truth in `extra["truth"]`, which `truth_measurements` turns into the same
form.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np

DEFAULT_UNITS = {
    "heart_rate": "bpm", "rr1": "ms", "rr2": "ms", "p_amplitude": "mV", "p_duration": "ms",
    "pr_interval": "ms", "qrs_amplitude": "mV", "qrs_duration": "ms", "t_amplitude": "mV",
    "t_duration": "ms", "st_duration": "ms", "st_level": "mV", "st_form": "", "qt_interval": "ms",
    "qtc_bazett": "ms", "qtc_fridericia": "ms", "qrs_axis": "deg", "low_voltage": "", "rr_irregularity": "",
}
_TRUTH_NAMES = {"hr_bpm": "heart_rate", "pr_ms": "pr_interval", "qrs_ms": "qrs_duration",
                "qt_ms": "qt_interval", "qtc_bazett_ms": "qtc_bazett", "axis_deg": "qrs_axis"}


@dataclass(frozen=True)
class Measured:
    """One measured value; `lead` None for a global (all-lead) measurement."""

    name: str
    value: float | str
    unit: str
    lead: str | None = None


def _one(name: str, raw, lead: str | None) -> Measured | None:
    value = getattr(raw, "value", raw)
    if value is None or (isinstance(value, float) and value != value):
        return None
    unit = getattr(raw, "unit", None) or DEFAULT_UNITS.get(name, "")
    lead = getattr(raw, "lead", lead)
    lead = None if lead in (None, "", "global") else str(lead)
    if isinstance(value, bool):
        value = "yes" if value else "no"
    elif not isinstance(value, str):
        value = float(value)
    return Measured(name, value, unit, lead)


def as_measured(source) -> list[Measured]:
    """Normalise any supported measurement container into a flat list of `Measured`."""
    if source is None:
        return []
    if isinstance(source, (list, tuple)) and all(isinstance(m, Measured) for m in source):
        return list(source)
    if not isinstance(source, Mapping):
        if isinstance(source, (list, tuple)):
            found = (_one(raw.name, raw, None) for raw in source)
            return [m for m in found if m is not None]
        for attr in ("items", "measurements", "values"):
            inner = getattr(source, attr, None)
            if isinstance(inner, (list, tuple, Mapping)):
                return as_measured(inner)
        raise TypeError(f"cannot read measurements from {type(source).__name__}")
    out: list[Measured] = []
    for name, raw in dict(source).items():
        if isinstance(raw, Mapping):
            entries = [(lead, v) for lead, v in raw.items()]
        elif isinstance(raw, (list, tuple)):
            entries = [(getattr(v, "lead", None), v) for v in raw]
        else:
            entries = [(None, raw)]
        for lead, v in entries:
            m = _one(name, v, lead)
            if m is not None:
                out.append(m)
    return out


def truth_measurements(record) -> list[Measured]:
    """Exact global measurements from a synthetic record's `extra["truth"]` (empty for real records)."""
    truth = record.extra.get("truth") or {}
    return [Measured(name, float(truth[key]), DEFAULT_UNITS[name]) for key, name in _TRUTH_NAMES.items()
            if truth.get(key) is not None]


def global_value(measured: list[Measured], name: str) -> float | None:
    """The global numeric value of a measurement (the median over leads where only per-lead values exist)."""
    values = [m.value for m in measured if m.name == name and m.lead is None and not isinstance(m.value, str)]
    if values:
        return float(values[0])
    per_lead = [m.value for m in measured if m.name == name and not isinstance(m.value, str)]
    return float(median(per_lead)) if per_lead else None


def per_lead(measured: list[Measured], name: str) -> dict[str, Measured]:
    return {m.lead: m for m in measured if m.name == name and m.lead is not None}


def measure_batch(records: list) -> list[list[Measured]]:
    """Measurements from `heartfast.signal.measure` for several records at once (records of equal rate and
    length share one batched call); empty lists where that module does not exist."""
    try:
        import torch

        from heartfast.signal.measure import measure
    except ImportError:
        return [[] for _ in records]
    out: list[list[Measured]] = [[] for _ in records]
    groups: dict[tuple[float, int], list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault((float(record.fs), record.n_samples), []).append(i)
    for (fs, _), indices in groups.items():
        signals = torch.from_numpy(np.stack([records[i].to_12_leads() for i in indices]))
        for i, result in zip(indices, measure(signals, fs)):
            out[i] = as_measured(result)
    return out


class MeasurementCache:
    """Measurements already taken, one JSON line per record, so an interrupted build resumes without
    measuring again (a truncated last line from an interruption is ignored)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._known: dict[str, list[Measured]] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self._known[entry["key"]] = [Measured(*m) for m in entry["measured"]]

    def __len__(self) -> int:
        return len(self._known)

    def get(self, key: str) -> list[Measured] | None:
        return self._known.get(key)

    def add(self, key: str, measured: list[Measured]) -> None:
        self._known[key] = measured
        with open(self.path, "a", encoding="utf-8") as f:
            row = [[m.name, m.value, m.unit, m.lead] for m in measured]
            f.write(json.dumps({"key": key, "measured": row}) + "\n")
