"""Grounding checks for interpretations: numeric claims against measurements, and lead coverage.

A claim is a feature name followed closely by a number and unit ("PR interval 182 ms", "QRS duration of
0.11 s", "heart rate 72 bpm", "axis -45°"). Seconds become milliseconds. A claim is grounded when it lies
within the feature's tolerance of the record's measurement (tolerances follow the delineation literature:
PR 20 ms, QRS 12 ms, QT/QTc 30 ms; rate 5 bpm; axis 15°).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
TOLERANCE = {"heart_rate": 5.0, "pr_interval": 20.0, "qrs_duration": 12.0, "qt_interval": 30.0,
             "qtc_bazett": 30.0, "qrs_axis": 15.0}
_TIME_FEATURES = frozenset({"pr_interval", "qrs_duration", "qt_interval", "qtc_bazett"})
_ALIASES = (
    ("qtc_bazett", r"qtc(?:\s*\(bazett\))?|corrected qt(?: interval)?"),
    ("qt_interval", r"qt interval|qt(?![c\w/])"),
    ("pr_interval", r"p-?r interval|pr(?![\w/])"),
    ("qrs_duration", r"qrs (?:duration|width|interval)|qrs(?!\s*(?:amplitude|voltage|axis|complex amplitude))"),
    ("heart_rate", r"(?:ventricular |heart )?rate|\bhr\b"),
    ("qrs_axis", r"(?:qrs |electrical |frontal |cardiac )?axis"),
)
_UNIT = r"(?P<unit>ms|msec|milliseconds?|s|sec|seconds?|bpm|beats per minute|beats/min|/min|°|degrees?|deg)?"
_CLAIM = re.compile(r"\b(?P<feature>" + "|".join(f"(?P<{n}>{p})" for n, p in _ALIASES) + r")"
                    r"(?P<filler>[^\d.;:+\-−<>=≤≥]{0,25}?(?:[:=][^\d;+\-−<>≤≥]{0,5})?)"
                    r"(?P<number>[+\-−]?\d+(?:\.\d+)?)(?!\s*(?:°|degrees?|ms|bpm|s)?\s*(?:-|–|to)\s*[+\-−]?\d)\s*"
                    + _UNIT + r"(?![\w])", re.IGNORECASE)
_BAD_FILLER = re.compile(r"amplitude|voltage|level|mv|lead", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    feature: str
    value: float        # ms for intervals, bpm, degrees
    text: str


def extract_claims(text: str) -> list[Claim]:
    """Numeric claims about rate, intervals and axis in an answer."""
    claims = []
    for m in _CLAIM.finditer(text):
        feature = next(name for name, _ in _ALIASES if m.group(name))
        if _BAD_FILLER.search(m.group("filler")):
            continue
        value = float(m.group("number").replace("−", "-"))
        unit = (m.group("unit") or "").lower()
        if feature in _TIME_FEATURES:
            if unit.startswith("s") or (not unit and abs(value) < 3):
                value *= 1000.0
            elif unit and not unit.startswith("m"):
                continue
        elif feature == "heart_rate" and unit and unit not in ("bpm", "beats per minute", "beats/min", "/min"):
            continue
        elif feature == "qrs_axis" and unit and unit not in ("°", "degree", "degrees", "deg"):
            continue
        claims.append(Claim(feature, value, m.group(0)))
    return claims


def check_claims(claims: list[Claim], reference: dict[str, float]) -> dict:
    """Share of claims (with a reference value) within tolerance, and the mean absolute error of time claims."""
    checked, within, time_errors = 0, 0, []
    for claim in claims:
        if claim.feature not in reference:
            continue
        error = abs(claim.value - reference[claim.feature])
        if claim.feature == "qrs_axis":
            error = min(error, 360.0 - error % 360.0)
        checked += 1
        within += error <= TOLERANCE[claim.feature]
        if claim.feature in _TIME_FEATURES:
            time_errors.append(error)
    return {"claims": len(claims), "checked": checked, "within": within,
            "time_errors_ms": time_errors}


_UNAMBIGUOUS = re.compile(r"\b(aV[RLF]|V[1-6])(?:\s*(?:-|–|to|through)\s*V([1-6]))?\b", re.IGNORECASE)
_ROMAN = re.compile(r"(?<![\w-])(III|II|I)(?![\w-])")


def leads_assessed(text: str) -> set[str]:
    """Leads an answer names: aVR/aVL/aVF and V1-V6 anywhere (ranges "V1-V3" expanded); I, II, III only in a
    clause that mentions a lead ("lead II", "leads I, aVL and V6"), where they cannot be the pronoun."""
    found: set[str] = set()
    for m in _UNAMBIGUOUS.finditer(text):
        name = m.group(1)
        if name.lower().startswith("av"):
            found.add("aV" + name[2].upper())
        else:
            first = int(name[1])
            last = int(m.group(2)) if m.group(2) else first
            found.update(f"V{i}" for i in range(first, max(first, last) + 1))
    for m in _ROMAN.finditer(text):
        clause_start = max(text.rfind(c, 0, m.start()) for c in ".;\n") + 1
        if re.search(r"\blead", text[clause_start:m.start()], re.IGNORECASE):
            found.add(m.group(1))
    return found


def lead_coverage(text: str) -> float:
    """Share of the 12 standard leads the answer assesses."""
    return len(leads_assessed(text) & set(LEADS_12)) / len(LEADS_12)
