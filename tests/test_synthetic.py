"""Synthetic ECG generator: lead algebra, determinism, and every finding visible in the signal itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heartfast.io.record import FIDUCIALS, LEADS_12, Record
from heartfast.signal.synthetic import FINDINGS, generate, generate_records

FS = 500.0
LEAD = {name: i for i, name in enumerate(LEADS_12)}


def _clean(findings: list[str], n: int = 6, seed: int = 11):
    return generate(n, seed=seed, findings=findings, noise=0.0)


def _beat_windows(batch, i: int, name: str) -> list[tuple[int, int]]:
    """(onset, offset) of a global fiducial pair for every complete beat of record i (lead I)."""
    waves = batch.annotations(i).waves["I"]
    on, off = waves[f"{name}_on"], waves[f"{name}_off"]
    return [(a, b) for a in on for b in off[off > a][:1] if b - a < 0.4 * FS]


def _heart_rate(batch, i: int) -> float:
    beats = batch.annotations(i).beat_samples
    return 60.0 * FS / float(np.diff(beats).mean())


def test_einthoven_and_goldberger_hold_exactly_with_noise():
    x = generate(5, seed=3, noise=1.0).signals
    lead_i, lead_ii = x[:, LEAD["I"]], x[:, LEAD["II"]]
    torch.testing.assert_close(x[:, LEAD["III"]], lead_ii - lead_i, rtol=0, atol=1e-6)
    torch.testing.assert_close(x[:, LEAD["aVR"]], -(lead_i + lead_ii) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(x[:, LEAD["aVL"]], lead_i - lead_ii / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(x[:, LEAD["aVF"]], lead_ii - lead_i / 2, rtol=0, atol=1e-6)


def test_same_seed_same_arrays_different_seed_differs():
    a, b, c = generate(4, seed=7), generate(4, seed=7), generate(4, seed=8)
    assert torch.equal(a.signals, b.signals)
    assert a.signals.dtype == torch.float32 and a.signals.shape == (4, 12, 5000)
    assert not torch.allclose(a.signals, c.signals)
    assert a.records()[2].extra["truth"] == b.records()[2].extra["truth"]


def test_records_carry_scp_labels_truth_and_fiducials_inside():
    records = generate_records(12, seed=5)
    for r in records:
        assert isinstance(r, Record) and r.database == "synthetic" and r.id.startswith("syn-")
        assert r.signal.shape == (12, 5000) and r.leads == LEADS_12 and r.sex in ("M", "F")
        assert r.labels and all(lab.system == "scp" and lab.likelihood == 100 for lab in r.labels)
        truth = r.extra["truth"]
        assert {"hr_bpm", "rr_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "axis_deg", "rhythm"} <= truth.keys()
        assert truth["rhythm"] in [lab.code for lab in r.labels]
        for lead in LEADS_12:
            for fid in FIDUCIALS:
                samples = r.annotations.waves[lead].get(fid, np.zeros(0, dtype=np.int64))
                assert np.all((samples >= 0) & (samples < r.n_samples)) and np.all(np.diff(samples) > 0)
        waves = r.annotations.waves["II"]
        assert len(waves["QRS_on"]) >= 5 and len(r.annotations.beat_samples) == len(r.annotations.beat_symbols)


def test_normal_sinus_rhythm_intervals_in_normal_ranges():
    batch = _clean(["SR"], n=20)
    t = batch.truth
    assert torch.all((t["hr_bpm"] > 60) & (t["hr_bpm"] < 100))
    assert torch.all((t["pr_ms"] >= 120) & (t["pr_ms"] <= 200))
    assert torch.all((t["qrs_ms"] >= 70) & (t["qrs_ms"] < 120))
    assert torch.all((t["qtc_bazett_ms"] > 340) & (t["qtc_bazett_ms"] < 470))
    assert torch.all((t["axis_deg"] > -30) & (t["axis_deg"] < 90))
    for i in range(len(batch)):
        r = batch.record(i)
        assert [lab.code for lab in r.labels] == ["NORM", "SR"]
        assert abs(_heart_rate(batch, i) - float(t["hr_bpm"][i])) < 1.0


def test_rate_findings_visible_in_beat_intervals():
    brady, tachy = _clean(["SBRAD"]), _clean(["STACH"])
    assert all(_heart_rate(brady, i) < 60 for i in range(len(brady)))
    assert all(_heart_rate(tachy, i) > 100 for i in range(len(tachy)))


def test_atrial_fibrillation_irregular_without_p_waves():
    af, sinus = _clean(["AFIB"]), _clean(["SR"])
    for i in range(len(af)):
        rr = np.diff(af.annotations(i).beat_samples)
        assert rr.std() / rr.mean() > 0.1
        assert all("P_on" not in af.annotations(i).waves[lead] for lead in LEADS_12)
        assert af.record(i).extra["truth"]["pr_ms"] is None
    for i in range(len(sinus)):
        rr = np.diff(sinus.annotations(i).beat_samples)
        assert rr.std() / rr.mean() < 0.08


def test_first_degree_av_block_long_pr():
    batch = _clean(["1AVB"])
    assert torch.all(batch.truth["pr_ms"] > 200)
    for i in range(len(batch)):
        waves = batch.annotations(i).waves["II"]
        gaps = [q - p for p in waves["P_on"] for q in waves["QRS_on"][waves["QRS_on"] > p][:1]]
        assert np.median(gaps) * 1000 / FS == pytest.approx(float(batch.truth["pr_ms"][i]), abs=2.5)


def _qrs_pairs(record: Record) -> list[tuple[int, int]]:
    """(QRS onset, offset) of every complete beat."""
    waves = record.annotations.waves["I"]
    return [(int(on), int(waves["QRS_off"][waves["QRS_off"] > on][0]))
            for on in waves["QRS_on"] if (waves["QRS_off"] > on).any()]


def _qrs_extent_from_signal(signal: np.ndarray, r_peak: int, fraction: float = 0.05) -> int:
    """Samples around an R peak where the all-lead envelope stays above fraction of its peak."""
    envelope = np.abs(signal).max(axis=0)
    threshold = fraction * envelope[r_peak - 10: r_peak + 10].max()
    left = right = r_peak
    while envelope[left - 1] > threshold:
        left -= 1
    while envelope[right + 1] > threshold:
        right += 1
    return right - left + 1


@pytest.mark.parametrize("block", ["CLBBB", "CRBBB"])
def test_bundle_branch_blocks_have_wide_qrs(block):
    batch, normal = _clean([block]), _clean(["SR"])
    assert torch.all(batch.truth["qrs_ms"] >= 120) and torch.all(normal.truth["qrs_ms"] < 120)
    for i in range(len(batch)):
        r = batch.record(i)
        assert block in [lab.code for lab in r.labels] and "NORM" not in [lab.code for lab in r.labels]
        beat = r.annotations.beat_samples[len(r.annotations.beat_samples) // 2]
        assert _qrs_extent_from_signal(r.signal, beat) * 1000 / FS >= 110


def _qrs_area_axis(record: Record) -> float:
    pairs = _qrs_pairs(record)
    on, off = pairs[len(pairs) // 2]
    area_i = record.signal[LEAD["I"], on:off + 1].sum()
    area_avf = record.signal[LEAD["aVF"], on:off + 1].sum()
    return math.degrees(math.atan2(2 * area_avf / math.sqrt(3), area_i))


@pytest.mark.parametrize("finding,low,high", [("LAD", -90, -30), ("RAD", 90, 180), ("SR", -30, 90)])
def test_axis_from_net_qrs_area_matches_truth(finding, low, high):
    batch = _clean([finding])
    for i in range(len(batch)):
        r = batch.record(i)
        measured, truth = _qrs_area_axis(r), r.extra["truth"]["axis_deg"]
        assert abs((measured - truth + 180) % 360 - 180) < 4
        assert low < truth < high
        assert r.extra["heart_axis"] == ("MID" if finding == "SR" else finding)


def _qrs_voltages(record: Record) -> np.ndarray:
    """Peak-to-peak QRS voltage per lead, the largest over all complete beats."""
    segments = [record.signal[:, on:off + 1] for on, off in _qrs_pairs(record)]
    assert len(segments) >= 3
    return np.max([seg.max(1) - seg.min(1) for seg in segments], axis=0)


def test_low_voltage_and_lvh_voltage_criteria():
    for r in generate_records(6, seed=2, findings=["LVOLT"], noise=0):
        pp = _qrs_voltages(r)
        assert pp[:6].max() < 0.5 and pp[6:].max() < 1.0
    for r in generate_records(6, seed=2, findings=["SR"], noise=0):
        assert _qrs_voltages(r)[:6].max() >= 0.5
    for r in generate_records(6, seed=2, findings=["LVH"], noise=0):
        s_v1 = -r.signal[LEAD["V1"]].min()
        r_v5v6 = r.signal[[LEAD["V5"], LEAD["V6"]]].max()
        assert s_v1 + r_v5v6 > 3.5


def _st_levels(record: Record) -> np.ndarray:
    """ST level per lead at J + 60 ms relative to the PR segment, median over beats."""
    levels = [record.signal[:, off + 30] - record.signal[:, on - 10]
              for on, off in _qrs_pairs(record) if on >= 10 and off + 30 < record.n_samples]
    assert len(levels) >= 3
    return np.median(np.array(levels), axis=0)


def test_st_elevation_and_depression_visible():
    for r in generate_records(6, seed=4, findings=["STE_"], noise=0):
        assert np.sort(_st_levels(r))[-2] >= 0.1          # at least two leads elevated by 1 mm
    for r in generate_records(6, seed=4, findings=["STD_"], noise=0):
        assert np.sort(_st_levels(r))[2] <= -0.05         # at least three leads depressed
    for r in generate_records(6, seed=4, findings=["SR"], noise=0):
        assert np.abs(_st_levels(r)).max() < 0.1


def _t_peaks(record: Record, leads: list[str]) -> float:
    return float(sum(record.signal[LEAD[lead], record.annotations.waves[lead]["T_peak"]].mean() for lead in leads))


def test_t_wave_inversion_in_lateral_leads():
    lateral = ["I", "II", "V4", "V5", "V6"]
    assert all(_t_peaks(r, lateral) < 0 for r in generate_records(6, seed=6, findings=["INVT"], noise=0))
    assert all(_t_peaks(r, lateral) > 0 for r in generate_records(6, seed=6, findings=["SR"], noise=0))


def test_pvcs_are_premature_wide_and_without_p():
    batch = _clean(["PVC"])
    for i in range(len(batch)):
        ann = batch.annotations(i)
        symbols = np.array(ann.beat_symbols)
        assert (symbols == "V").sum() >= 1
        rr_before = np.diff(ann.beat_samples)
        v = np.flatnonzero(symbols == "V")
        v = v[v > 0]
        assert np.all(rr_before[v - 1] < 0.8 * np.median(rr_before))
        assert batch.fiducials[i, 1, :, FIDUCIALS.index("P_on")].eq(-1).all()
        qrs_pvc = batch.fiducials[i, 1, 0, FIDUCIALS.index("QRS_off")] - batch.fiducials[i, 1, 0, FIDUCIALS.index("QRS_on")]
        assert qrs_pvc * 1000 / FS >= 120


def test_random_mix_labels_agree_with_measured_truth():
    batch = generate(300, seed=1, noise=0.0)
    counts = batch.flags.sum(0)
    assert all(int(c) > 0 for c in counts), dict(zip(FINDINGS, counts.tolist()))
    for i in range(len(batch)):
        t = batch.truth_dict(i)
        rhythm = t["rhythm"]
        assert (rhythm == "SBRAD") == (t["hr_bpm"] < 60) or rhythm == "AFIB"
        assert (rhythm == "STACH") == (t["hr_bpm"] > 100) or rhythm == "AFIB"
        if "1AVB" in t["findings"]:
            assert t["pr_ms"] > 200
        elif rhythm != "AFIB":
            assert t["pr_ms"] <= 200
        wide = ("CLBBB" in t["findings"]) or ("CRBBB" in t["findings"])
        assert (t["qrs_ms"] >= 120) == wide


def test_bad_findings_are_refused():
    with pytest.raises(ValueError, match="unknown finding"):
        generate(2, seed=0, findings=["XYZ"])
    with pytest.raises(ValueError, match="CLBBB and CRBBB"):
        generate(2, seed=0, findings=["CLBBB", "CRBBB"])
