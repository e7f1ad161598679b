"""Per-record facts that questions rest on: findings, measurements, axis and rate (no signal)."""
from __future__ import annotations

from dataclasses import dataclass, field

from heartfast.instruct.findings import Finding, record_findings
from heartfast.instruct.measured import Measured, global_value
from heartfast.instruct.splits import patient_key

AXIS_CATEGORIES: tuple[str, ...] = ("Normal axis", "Left axis deviation", "Right axis deviation",
                                    "Extreme axis deviation")
RATE_CATEGORIES: tuple[str, ...] = ("Bradycardia (below 60 bpm)", "Normal rate (60-100 bpm)",
                                    "Tachycardia (100-150 bpm)", "Marked tachycardia (above 150 bpm)")
NOISE_TYPES = {"baseline_drift": "Baseline drift", "static_noise": "Static noise", "burst_noise": "Burst noise",
               "electrodes_problems": "Electrode problems"}
NO_NOISE = "No relevant noise or artefact"
_PTBXL_AXIS = {"MID": 0, "LAD": 1, "ALAD": 1, "AXL": 1, "RAD": 2, "ARAD": 2, "AXR": 2, "SARAD": 2}


def axis_category(degrees: float) -> str:
    """Frontal QRS axis class: normal -30..+90, left -30..-90, right +90..+180, extreme otherwise."""
    d = (degrees + 180.0) % 360.0 - 180.0
    if -30.0 <= d <= 90.0:
        return AXIS_CATEGORIES[0]
    if -90.0 <= d < -30.0:
        return AXIS_CATEGORIES[1]
    return AXIS_CATEGORIES[2] if d > 90.0 else AXIS_CATEGORIES[3]


def rate_category(bpm: float) -> str:
    if bpm < 60:
        return RATE_CATEGORIES[0]
    if bpm <= 100:
        return RATE_CATEGORIES[1]
    return RATE_CATEGORIES[2] if bpm <= 150 else RATE_CATEGORIES[3]


@dataclass
class RecordFacts:
    """What the item builders know about one record once its signal is no longer needed."""

    record_id: str
    database: str
    patient: str
    split: str
    age: float | None
    sex: str | None
    over_89: bool
    findings: list[Finding]
    measured: list[Measured] = field(default_factory=list)
    axis: str | None = None          # one of AXIS_CATEGORIES
    axis_source: str = ""
    heart_rate: float | None = None
    noise: list[str] | None = None   # NOISE_TYPES names flagged; None where the database records no noise

    def value(self, name: str) -> float | None:
        return global_value(self.measured, name)


def _axis_from_labels(record) -> str | None:
    code = str(record.extra.get("heart_axis", "")).strip().upper()
    if code in _PTBXL_AXIS:
        return AXIS_CATEGORIES[_PTBXL_AXIS[code]]
    for label in record.labels:
        text = f"{label.description} {label.code}".lower().replace("_", " ")
        if "axis" in text:
            if "left axis deviation" in text:
                return AXIS_CATEGORIES[1]
            if "right axis deviation" in text:
                return AXIS_CATEGORIES[2]
            if any(w in text for w in ("normal", "horizontal", "vertical")):
                return AXIS_CATEGORIES[0]
    return None


def record_facts(record, split: str, measured: list[Measured]) -> RecordFacts:
    """Collect the facts of a `heartfast.io.Record` given its split and measurements.

    The axis class comes from the database's annotation where it has one (PTB-XL `heart_axis`, LUDB), else
    from the measured axis; axis and rate classes use the whole-number values the items print."""
    facts = RecordFacts(record.id, record.database, patient_key(record), split, record.age, record.sex,
                        bool(record.extra.get("age_over_89")), record_findings(record), measured)
    axis_deg = facts.value("qrs_axis")
    labelled = _axis_from_labels(record)
    if labelled is not None:
        facts.axis, facts.axis_source = labelled, "label"
    elif axis_deg is not None:
        facts.axis, facts.axis_source = axis_category(round(axis_deg)), "measured"
    if record.database == "ptb-xl":   # PTB-XL's technical validation flags noise per record
        facts.noise = [name for key, name in NOISE_TYPES.items() if str(record.extra.get(key, "")).strip(" ,")]
    rate = facts.value("heart_rate")
    facts.heart_rate = None if rate is None else float(round(rate))
    return facts
