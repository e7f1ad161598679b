"""GEM measurements on synthetic records with known truth, and the Measurement containers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heartfast.signal.measure import Measurement, Measurements, measure, measure_record, st_form
from heartfast.signal.synthetic import generate_records

NAMES = ("heart_rate", "rr1", "rr2", "p_amplitude", "p_duration", "pr_interval", "qrs_amplitude", "qrs_duration",
         "t_amplitude", "t_duration", "st_duration", "st_level", "st_form", "qt_interval", "qtc_bazett",
         "qtc_fridericia", "qrs_axis", "low_voltage", "rr_irregularity")


@pytest.fixture(scope="module")
def sinus():
    records = generate_records(16, seed=21, findings=["SR"])
    signals = torch.from_numpy(np.stack([r.to_12_leads() for r in records]))
    return records, measure(signals, 500)


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def test_every_stable_name_is_measured(sinus):
    _, results = sinus
    for m in results:
        assert set(NAMES) <= set(m.global_())
        assert {"p_amplitude", "qrs_duration", "st_form", "t_amplitude"} <= set(m.lead("V2"))


def test_intervals_and_axis_match_the_synthetic_truth(sinus):
    records, results = sinus
    within = []
    for record, m in zip(records, results):
        truth, g = record.extra["truth"], m.global_()
        within.append(abs(g["heart_rate"].value - truth["hr_bpm"]) <= 5
                      and abs(g["pr_interval"].value - truth["pr_ms"]) <= 20
                      and abs(g["qrs_duration"].value - truth["qrs_ms"]) <= 12
                      and abs(g["qt_interval"].value - truth["qt_ms"]) <= 30)
        assert _angle_diff(g["qrs_axis"].value, truth["axis_deg"]) <= 15, (g["qrs_axis"].value, truth["axis_deg"])
        expected_qtc = g["qt_interval"].value / math.sqrt(g["rr1"].value / 1000)
        assert g["qtc_bazett"].value == pytest.approx(expected_qtc, rel=0.05)
    assert np.mean(within) >= 0.9


def test_measurements_cite_their_beats_and_units(sinus):
    _, results = sinus
    m = results[0]
    qrs = m.get("qrs_duration")
    assert qrs.unit == "ms" and qrs.lead is None and len(qrs.beats) >= 5
    assert all(0 <= b < len(m.beat_samples) for b in qrs.beats)
    assert m.get("rr1").beats[0] >= 1          # the first beat has no previous RR
    assert m.get("p_amplitude", "II").unit == "mV"
    d = m.to_dict()
    assert d["global"]["heart_rate"]["unit"] == "bpm" and "V6" in d["leads"]
    with pytest.raises(KeyError):
        m.get("no_such_feature")


def test_low_voltage_and_axis_deviation_are_seen():
    records = generate_records(6, seed=5, findings=[["LVOLT"], ["LVOLT"], ["SR"], ["SR"], ["LAD"], ["RAD"]])
    results = [measure_record(r) for r in records]
    assert [m.get("low_voltage").value for m in results[:4]] == [True, True, False, False]
    assert results[4].get("qrs_axis").value < -30
    assert results[5].get("qrs_axis").value > 90


def test_st_form_words():
    assert st_form(0.2, 1.0) == "elevated, upsloping"
    assert st_form(-0.1, -1.0) == "depressed, downsloping"
    assert st_form(0.0, 0.0) == "normal, horizontal"
    assert st_form(math.nan, 0.0) == "unknown"


def test_missing_leads_are_left_out():
    record = generate_records(1, seed=3, findings=["SR"])[0]
    keep = [i for i, name in enumerate(record.leads) if name not in ("V3", "V4")]
    record.signal, record.leads = record.signal[keep], tuple(record.leads[i] for i in keep)
    m = measure_record(record)
    assert m.lead("V3") == {} and m.lead("V5")
    assert not math.isnan(m.get("qrs_duration").value)


def test_nan_value_serialises_as_none():
    m = Measurements(fs=500, beat_samples=(10,), items=[Measurement("pr_interval", math.nan, "ms", None, ())])
    assert m.to_dict()["global"]["pr_interval"]["value"] is None


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="12"):
        measure(torch.zeros(1, 3, 1000), 500)


def test_atrial_fibrillation_gets_no_pr_interval_and_irregular_rr():
    af = [measure_record(r) for r in generate_records(6, seed=4, findings=["AFIB"])]
    sinus = [measure_record(r) for r in generate_records(4, seed=4, findings=["SR"])]
    assert sum(math.isnan(m.get("pr_interval").value) for m in af) >= 5
    assert all(not math.isnan(m.get("pr_interval").value) for m in sinus)
    assert min(m.get("rr_irregularity").value for m in af) > max(m.get("rr_irregularity").value for m in sinus)
