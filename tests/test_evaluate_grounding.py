"""Grounding: numeric claims extracted from answers and checked against measurements; lead coverage."""
from __future__ import annotations

import pytest

from heartfast.evaluate.grounding import check_claims, extract_claims, lead_coverage, leads_assessed


def test_extract_claims_units_and_phrasings():
    text = ("Sinus rhythm at a heart rate of 72 bpm. PR interval 182 ms; QRS duration of 0.11 s; "
            "QT interval 400 ms; QTc (Bazett) 440 ms. QRS axis -45°. Lead V1: QRS amplitude 1.20 mV. "
            "The rate is 80/min. Electrical axis of −30 degrees.")
    got = [(c.feature, c.value) for c in extract_claims(text)]
    assert got == [("heart_rate", 72.0), ("pr_interval", 182.0), ("qrs_duration", pytest.approx(110.0)),
                   ("qt_interval", 400.0), ("qtc_bazett", 440.0), ("qrs_axis", -45.0), ("heart_rate", 80.0),
                   ("qrs_axis", -30.0)]


def test_amplitudes_thresholds_and_ranges_are_not_claims():
    assert extract_claims("QRS amplitude 1.2 mV in V5, ST level 0.1 mV") == []
    text = "QRS >= 120 ms; PR > 200 ms; axis -45° to -90°; rate 50-100 bpm; rate 60 to 100 bpm"
    assert extract_claims(text) == []


def test_check_claims_tolerances():
    claims = extract_claims("PR interval 182 ms, QRS duration 130 ms, heart rate 74 bpm, QT 0.52 s")
    result = check_claims(claims, {"pr_interval": 170.0, "qrs_duration": 100.0, "heart_rate": 72.0})
    assert result["claims"] == 4 and result["checked"] == 3
    assert result["within"] == 2                      # PR within 20 ms, rate within 5 bpm; QRS off by 30
    assert sorted(result["time_errors_ms"]) == [12.0, 30.0]


def test_lead_coverage():
    assert lead_coverage("ST elevation in V1-V4 and aVL; leads I, II and III show Q waves.") == pytest.approx(8 / 12)
    assert leads_assessed("I think the rhythm is sinus. II") == set()     # pronoun / no lead context
    assert leads_assessed("Lead II: P amplitude 0.12 mV.") == {"II"}
    assert lead_coverage("Leads I, II, III, aVR, aVL, aVF and V1 through V6 were assessed.") == 1.0
    assert lead_coverage("") == 0.0
