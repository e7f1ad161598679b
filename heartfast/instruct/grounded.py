"""GEM-style grounded interpretation: rate and rhythm, intervals, axis, lead-by-lead values, then each
diagnosis with the measurement that supports it or fails to (at most 300 words)."""
from __future__ import annotations

import random

from heartfast.instruct.builders import (
    cap, fill_template, format_value, graded_list, label_evidence, measure_evidence,
)
from heartfast.instruct.facts import RecordFacts, axis_category
from heartfast.instruct.findings import certainty_phrase
from heartfast.instruct.items import Item
from heartfast.instruct.vocabulary import NORMAL_VARIANTS

GROUNDED_WORD_LIMIT = 300

# Measurement rules a diagnosis can be checked against: code -> (measurement, test, wording of the criterion).
_CRITERIA = {
    "1AVB": ("pr_interval", lambda v: v > 200, "PR > 200 ms"),
    "LPR": ("pr_interval", lambda v: v > 200, "PR > 200 ms"),
    "CLBBB": ("qrs_duration", lambda v: v >= 120, "QRS >= 120 ms"),
    "CRBBB": ("qrs_duration", lambda v: v >= 120, "QRS >= 120 ms"),
    "IVCD": ("qrs_duration", lambda v: v >= 110, "QRS >= 110 ms"),
    "IRBBB": ("qrs_duration", lambda v: 100 <= v < 120, "QRS 100-120 ms"),
    "ILBBB": ("qrs_duration", lambda v: 100 <= v < 120, "QRS 100-120 ms"),
    "WPW": ("pr_interval", lambda v: v < 120, "PR < 120 ms"),
    "STACH": ("heart_rate", lambda v: v > 100, "rate > 100 bpm"),
    "SBRAD": ("heart_rate", lambda v: v < 60, "rate < 60 bpm"),
    "SR": ("heart_rate", lambda v: 50 <= v <= 100, "rate 50-100 bpm"),
    "LNGQT": ("qtc_bazett", lambda v: v > 450, "QTc > 450 ms"),
    "LAFB": ("qrs_axis", lambda v: -90 <= v <= -45, "axis <= -45°"),
    "LPFB": ("qrs_axis", lambda v: v >= 90, "axis >= +90°"),
}
_NAMES = {"heart_rate": "heart rate", "pr_interval": "PR interval", "qrs_duration": "QRS duration",
          "qtc_bazett": "QTc", "qrs_axis": "QRS axis"}
_LEAD_FEATURES = (("qrs_amplitude", "QRS amplitude"), ("st_level", "ST level"), ("t_amplitude", "T amplitude"),
                  ("p_amplitude", "P amplitude"))
_LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
_CHEST = ("V1", "V2", "V3", "V4", "V5", "V6")


def _range_word(name: str, value: float, sex: str | None) -> str:
    limits = {"heart_rate": (60, 100), "pr_interval": (120, 200), "qrs_duration": (0, 119),
              "qtc_bazett": (0, 460 if sex == "F" else 450), "qrs_axis": (-30, 90), "qt_interval": (0, 1e9)}
    low, high = limits.get(name, (-1e9, 1e9))
    value = round(value)
    return "normal" if low <= value <= high else "increased" if value > high else "decreased"


def grounded_text(facts: RecordFacts) -> str | None:
    """GEM-style interpretation: rate/rhythm, intervals, axis, lead-by-lead values, then diagnoses with the
    measurements that support (or fail to support) each. At most 300 words; None without measurements."""
    if not facts.measured:
        return None
    head = []
    rhythm = [f for f in facts.findings if f.in_group("rhythm")]
    rate = facts.value("heart_rate")
    rhythm_text = graded_list(rhythm) if rhythm else "rhythm not stated"
    if rate is not None:
        rhythm_text += f" at a heart rate of {rate:.0f} bpm ({_range_word('heart_rate', rate, facts.sex)})"
    head.append(f"Rhythm: {rhythm_text}.")
    intervals = []
    for name, label in (("pr_interval", "PR interval"), ("qrs_duration", "QRS duration"),
                        ("qt_interval", "QT interval"), ("qtc_bazett", "QTc (Bazett)")):
        value = facts.value(name)
        if value is not None:
            intervals.append(f"{label} {value:.0f} ms ({_range_word(name, value, facts.sex)})")
    if intervals:
        head.append("Intervals: " + "; ".join(intervals) + ".")
    axis = facts.value("qrs_axis")
    if axis is not None:
        head.append(f"QRS axis {format_value(axis, 'deg')} ({axis_category(round(axis)).lower()}).")
    leads = []
    for lead in (*_LIMB, *_CHEST):
        values = [f"{label} {format_value(float(m.value), m.unit)}" for name, label in _LEAD_FEATURES
                  for m in facts.measured if m.name == name and m.lead == lead and not isinstance(m.value, str)]
        if values:
            leads.append(f"Lead {lead}: " + ", ".join(values) + ".")
    diagnosis = []
    for f in sorted(facts.findings, key=lambda f: -f.effective_likelihood):
        if f.code not in _CRITERIA or facts.value(_CRITERIA[f.code][0]) is None:
            if not f.in_group("rhythm"):
                diagnosis.append(f"{cap(f.name)} ({certainty_phrase(f.likelihood)}).")
            continue
        name, test, criterion = _CRITERIA[f.code]
        value = facts.value(name)
        shown = format_value(value, "deg" if name == "qrs_axis" else "bpm" if name == "heart_rate" else "ms")
        verdict = "supported by" if test(value) else "not supported by"
        diagnosis.append(f"{cap(f.name)} ({certainty_phrase(f.likelihood)}), {verdict} the {_NAMES[name]} of "
                         f"{shown} ({criterion}).")
    if not diagnosis:
        diagnosis.append(NORMAL_VARIANTS["diagnosis"][0] + ".")
    tail = ["Diagnosis: " + " ".join(diagnosis)]
    while leads and len(" ".join(head + leads + tail).split()) > GROUNDED_WORD_LIMIT:
        leads.pop()
    text = " ".join(head + leads + tail)
    words = text.split()
    return text if len(words) <= GROUNDED_WORD_LIMIT else " ".join(words[:GROUNDED_WORD_LIMIT])


def grounded_item(facts: RecordFacts, rng: random.Random, index: int, item_id: str) -> Item | None:
    text = grounded_text(facts)
    if text is None:
        return None
    evidence = {"labels": label_evidence(facts.findings), "measurements": measure_evidence(facts),
                "superclasses": sorted({f.superclass for f in facts.findings if f.superclass})}
    return Item(item_id, "GroundedInterpretation", "both", [facts.record_id],
                fill_template("GroundedInterpretation", index, facts, rng), text, facts.split, evidence=evidence,
                template=f"GroundedInterpretation/{index}", inputs=["signal", "image"])
