"""Delineation scored against expert annotations, the QT Database / LUDB convention.

A detected fiducial point matches an expert point of the same kind within 150 ms (one to one, nearest
first). Per fiducial: sensitivity = matched / expert points, positive predictive value = matched /
detected points, and the mean and SD of the signed error (detected - expert) in ms. Only the annotated
stretches count: runs of expert points without a gap over 1 s (QTDB annotates selected beats), inside
the annotated range where a database gives one (LUDB annotates the central part); a detection just
outside a stretch counts when it matches an expert point inside it.
Record level: heart rate, PR, QRS and QT from the expert points against each method's (medians over
beats inside the annotated stretches), absolute errors and the share of records within HR ±5 bpm,
PR ±20 ms, QRS ±12 ms, QT ±30 ms. The expert intervals come from the scored lead's own annotations
(reference 'lead', the default) or, where a database annotates every lead separately (LUDB), from the
earliest onset and latest offset over all leads (reference 'global', the 12-lead measurement
convention); QTDB's annotations are all-lead either way. Run time is process CPU time on CPU.

Methods compared in one run: heartfast's batched delineator (all leads, multi-lead fusion; where the
experts annotated each lead by itself it is scored on its own delineation of the scored lead),
NeuroKit2's `ecg_delineate` (one lead; 'dwt', its default, and 'prominence') and, as the reference's
own floor, the experts' annotations of a neighbouring lead ('expert-aVF' for lead II on LUDB).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from heartfast.io.record import FIDUCIALS, Record, canonical_lead

MATCH_S = 0.150
SCORED = ("P_on", "P_peak", "P_off", "QRS_on", "QRS_peak", "QRS_off", "T_peak", "T_off")
INTERVALS = ("heart_rate", "pr_interval", "qrs_duration", "qt_interval")
TOLERANCE = {"heart_rate": 5.0, "pr_interval": 20.0, "qrs_duration": 12.0, "qt_interval": 30.0}
UNITS = {"heart_rate": "bpm", "pr_interval": "ms", "qrs_duration": "ms", "qt_interval": "ms"}
REGION_GAP_S = 1.0      # expert points further apart than this start a new annotated stretch
REGION_MARGIN_S = 0.1
BATCH = 32              # records per delineation call
_WARMED: set[str] = set()   # devices run_heartfast has warmed up in this process

Points = dict[str, np.ndarray]  # fiducial -> sorted sample indices


# ---------------------------------------------------------------------------------------------- matching

def match_points(expert: np.ndarray, detected: np.ndarray, tolerance: float) -> list[tuple[int, int]]:
    """One-to-one matching, closest pairs first: [(expert index, detected index)] within tolerance."""
    if len(expert) == 0 or len(detected) == 0:
        return []
    distance = np.abs(np.asarray(detected, float)[None, :] - np.asarray(expert, float)[:, None])
    pairs = np.argwhere(distance <= tolerance)
    order = np.argsort(distance[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_e, used_d, matched = set(), set(), []
    for e, d in pairs[order]:
        if e not in used_e and d not in used_d:
            used_e.add(e)
            used_d.add(d)
            matched.append((int(e), int(d)))
    return sorted(matched)


def annotated_regions(expert: Points, fs: float, annotated_range: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Sample ranges [start, stop) where the expert annotated every wave: stretches of expert points with
    no gap over REGION_GAP_S (plus a margin), clipped to the database's annotated range if it has one."""
    marks = np.sort(np.concatenate([np.asarray(v, np.int64) for v in expert.values()] or [np.zeros(0, np.int64)]))
    if len(marks) == 0:
        return []
    breaks = np.flatnonzero(np.diff(marks) > REGION_GAP_S * fs)
    starts = np.concatenate([marks[:1], marks[breaks + 1]])
    stops = np.concatenate([marks[breaks], marks[-1:]])
    margin = int(REGION_MARGIN_S * fs)
    regions = [(int(a) - margin, int(b) + margin + 1) for a, b in zip(starts, stops)]
    if annotated_range is not None:
        lo, hi = int(annotated_range[0]), int(annotated_range[1])
        regions = [(max(a, lo), min(b, hi)) for a, b in regions if min(b, hi) > max(a, lo)]
    return regions


def _inside(samples: np.ndarray, regions: Sequence[tuple[int, int]]) -> np.ndarray:
    samples = np.asarray(samples, np.int64)
    keep = np.zeros(len(samples), bool)
    for start, stop in regions:
        keep |= (samples >= start) & (samples < stop)
    return samples[keep]


@dataclass
class PointScore:
    """Counts and signed errors (ms) of one fiducial point, accumulated over records."""

    n_expert: int = 0
    n_detected: int = 0
    errors_ms: list[float] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return len(self.errors_ms)

    @property
    def sensitivity(self) -> float:
        return self.matched / self.n_expert if self.n_expert else math.nan

    @property
    def ppv(self) -> float:
        return self.matched / self.n_detected if self.n_detected else math.nan

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.errors_ms)) if self.errors_ms else math.nan

    @property
    def sd_ms(self) -> float:
        return float(np.std(self.errors_ms, ddof=1)) if len(self.errors_ms) > 1 else math.nan

    def add(self, expert: np.ndarray, detected: np.ndarray, fs: float,
            regions: Sequence[tuple[int, int]] | None = None) -> None:
        """Score one record's points; with `regions`, only the expert points inside them count, and a
        detection counts when it lies inside them or matches one of those expert points from just outside
        (a boundary a sample before the first annotated one is no miss; an unmatched detection outside
        the annotated stretches is neither right nor wrong)."""
        tolerance = MATCH_S * fs
        counted = np.ones(len(detected), bool)
        if regions is not None:
            expert = _inside(expert, regions)
            detected = _inside(detected, [(a - int(tolerance), b + int(tolerance)) for a, b in regions])
            counted = np.isin(detected, _inside(detected, regions))
        pairs = match_points(expert, detected, tolerance)
        counted[[d for _, d in pairs]] = True
        self.n_expert += len(expert)
        self.n_detected += int(counted.sum())
        self.errors_ms.extend((float(detected[d]) - float(expert[e])) * 1000.0 / fs for e, d in pairs)

    def summary(self) -> dict:
        return {"n_expert": self.n_expert, "n_detected": self.n_detected, "matched": self.matched,
                "sensitivity": self.sensitivity, "ppv": self.ppv, "mean_ms": self.mean_ms, "sd_ms": self.sd_ms}


# ---------------------------------------------------------------------------------------------- intervals

def record_intervals(points: Points, fs: float) -> dict[str, float]:
    """HR (bpm, from the mean RR) and median PR, QRS and QT (ms) over the beats in `points` (NaN where none).

    A beat is a QRS onset; its QRS offset is the next one within 250 ms, its P onset the last one
    within 450 ms before, its T offset the first within 800 ms after and before the next QRS onset.
    """
    def first_after(marks: np.ndarray, t: float, limit: float) -> float:
        after = marks[(marks > t) & (marks <= limit)]
        return float(after[0]) - t if len(after) else math.nan

    qrs_on = np.sort(np.asarray(points.get("QRS_on", []), float))
    peaks = np.sort(np.asarray(points.get("QRS_peak", []), float))
    p_on = np.sort(np.asarray(points.get("P_on", []), float))
    qrs_off = np.sort(np.asarray(points.get("QRS_off", []), float))
    t_off = np.sort(np.asarray(points.get("T_off", []), float))
    anchors = peaks if len(peaks) > 1 else qrs_on
    rr = np.diff(anchors)
    rr = rr[(rr > 0.2 * fs) & (rr < 2.0 * fs)]
    pr, qrs, qt = [], [], []
    for i, q in enumerate(qrs_on):
        following = qrs_on[i + 1] if i + 1 < len(qrs_on) else math.inf
        before = p_on[(p_on < q) & (p_on >= q - 0.45 * fs)]
        if len(before):
            pr.append(q - before[-1])
        qrs.append(first_after(qrs_off, q, q + 0.25 * fs))
        qt.append(first_after(t_off, q, min(q + 0.8 * fs, following)))

    def ms(values: list[float]) -> float:
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        return float(np.median(v) * 1000.0 / fs) if len(v) else math.nan

    return {"heart_rate": float(60.0 * fs / np.mean(rr)) if len(rr) else math.nan,
            "pr_interval": ms(pr), "qrs_duration": ms(qrs), "qt_interval": ms(qt)}


# ---------------------------------------------------------------------------------------------- methods

@dataclass
class MethodResult:
    """Detected points of one method: for the scored lead, for the record-level intervals; run time."""

    points: list[Points]
    interval_points: list[Points]
    seconds: float


def run_heartfast(records: Sequence[Record], lead: str, device: str = "cpu", reference: str = "lead") -> MethodResult:
    """heartfast on all 12 (or however many) leads; batches records of equal rate, leads and length.

    Where the experts annotated the scored lead by itself (LUDB), the scored points are that lead's own
    delineation, and so are the interval points for the 'lead' reference (like with like); otherwise
    (QTDB's all-lead annotations, or the 'global' reference) they are the multi-lead (global) points.
    """
    from heartfast.signal.delineate import delineate

    points: list[Points | None] = [None] * len(records)
    interval_points: list[Points | None] = [None] * len(records)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.fs, r.leads, r.n_samples), []).append(i)
    seconds = 0.0
    if records and device not in _WARMED:  # untimed warm-up: first-call costs (FFT plans, allocator)
        delineate(torch.from_numpy(records[0].signal[None].astype(np.float32)).to(device), records[0].fs)
        _WARMED.add(device)
    chunks = [(key, members[s:s + BATCH]) for key, members in groups.items() for s in range(0, len(members), BATCH)]
    for (fs, leads, _), members in chunks:
        batch = torch.from_numpy(np.stack([records[i].signal for i in members]).astype(np.float32))
        start = _clock(device)
        result = delineate(batch.to(device), fs)
        if device != "cpu":
            torch.cuda.synchronize()
        seconds += _clock(device) - start
        lead_index = _lead_index(leads, lead)
        global_batch = {f: result.points[f].cpu().numpy() for f in FIDUCIALS}
        lead_batch = {f: result.lead_points[f][:, lead_index].cpu().numpy() for f in FIDUCIALS}
        for j, i in enumerate(members):
            global_points = {f: _valid(global_batch[f][j]) for f in FIDUCIALS}
            annotations = records[i].annotations
            if annotations is not None and canonical_lead(lead) in annotations.waves:
                points[i] = {f: _valid(lead_batch[f][j]) for f in FIDUCIALS}
                interval_points[i] = points[i] if _against_lead(records[i], reference) else global_points
            else:
                points[i] = interval_points[i] = global_points
    return MethodResult(points, interval_points, seconds)


def _clock(device: str) -> float:
    """CPU time of this process on CPU (what the method costs, whatever else the machine runs);
    wall time on a GPU, where the work is not this process's CPU time."""
    return time.process_time() if device == "cpu" else time.perf_counter()


def _valid(v: np.ndarray) -> np.ndarray:
    return np.sort(v[v >= 0]).astype(np.int64)


def _lead_index(leads: Sequence[str], lead: str) -> int:
    wanted = canonical_lead(lead)
    return list(leads).index(wanted) if wanted in leads else 0


def run_neurokit(records: Sequence[Record], lead: str, method: str) -> MethodResult:
    """NeuroKit2 on one lead: ecg_clean -> ecg_peaks -> ecg_delineate(method); timed per record."""
    import warnings

    import neurokit2 as nk

    keys = {"P_on": "ECG_P_Onsets", "P_peak": "ECG_P_Peaks", "P_off": "ECG_P_Offsets",
            "QRS_on": "ECG_R_Onsets", "QRS_off": "ECG_R_Offsets", "T_on": "ECG_T_Onsets",
            "T_peak": "ECG_T_Peaks", "T_off": "ECG_T_Offsets"}
    points, seconds = [], 0.0
    for r in records:
        x = r.signal[_lead_index(r.leads, lead)].astype(np.float64)
        start = time.process_time()
        found: Points = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cleaned = nk.ecg_clean(x, sampling_rate=int(r.fs))
                _, info = nk.ecg_peaks(cleaned, sampling_rate=int(r.fs))
                found["QRS_peak"] = np.asarray(info["ECG_R_Peaks"], np.int64)
                _, waves = nk.ecg_delineate(cleaned, info["ECG_R_Peaks"], sampling_rate=int(r.fs), method=method)
            for name, key in keys.items():
                v = np.asarray(waves.get(key, []), float)
                found[name] = np.sort(v[np.isfinite(v)].astype(np.int64))
        except Exception:  # NeuroKit2 raises on records it cannot delineate: score them as all-missed
            found = {name: found.get(name, np.zeros(0, np.int64)) for name in FIDUCIALS}
        seconds += time.process_time() - start
        points.append(found)
    return MethodResult(points, points, seconds)


# ---------------------------------------------------------------------------------------------- scoring

@dataclass
class MethodScore:
    name: str
    points: dict[str, PointScore]
    interval_errors: dict[str, list[float]]
    within_all: list[bool]
    records_per_s: float

    def summary(self) -> dict:
        out = {"method": self.name, "records_per_s": self.records_per_s,
               "points": {f: s.summary() for f, s in self.points.items()}, "intervals": {}}
        for name, errs in self.interval_errors.items():
            e = np.asarray(errs, float)
            ok = np.isfinite(e)
            out["intervals"][name] = {
                "n": int(ok.sum()), "mae": float(np.mean(e[ok])) if ok.any() else math.nan,
                "within": float(np.mean(e[ok] <= TOLERANCE[name])) if ok.any() else math.nan,
                "unit": UNITS[name]}
        out["within_all"] = float(np.mean(self.within_all)) if self.within_all else math.nan
        return out


def multilead_expert_points(waves: dict[str, Points], lead: str, fs: float) -> Points:
    """Expert points of the whole 12-lead beat from per-lead annotations (LUDB): for each beat the scored
    lead annotated, the earliest onset and the latest offset any lead's annotation puts within 100 ms of
    it. Record-level PR, QRS and QT are measured this way on a 12-lead ECG (from the earliest onset to the
    latest offset seen in any lead), which is what heartfast's global fiducials and `measure` report.
    Over leads annotated one by one it is wider than any lead's own reading, each lead's scatter widening
    it (LUDB records 1-100: median QRS 126 ms against 94 ms in lead II, QT 31 ms longer)."""
    own = waves[canonical_lead(lead)]
    out: Points = {f: np.asarray(v, np.int64) for f, v in own.items()}
    for name, earliest in (("P_on", True), ("QRS_on", True), ("QRS_off", False), ("T_off", False)):
        beats = np.asarray(own.get(name, []), np.int64)
        marks = [np.asarray(w.get(name, []), np.int64) for w in waves.values()]
        marks = [m for m in marks if len(m)]
        if not len(beats) or not marks:
            continue
        near = np.full((len(marks), len(beats)), np.nan)
        for i, m in enumerate(marks):  # each lead's annotation nearest to each beat of the scored lead
            j = np.clip(np.searchsorted(m, beats), 1, max(1, len(m) - 1))
            candidates = np.stack([m[j - 1], m[np.minimum(j, len(m) - 1)]])
            best = candidates[np.abs(candidates - beats).argmin(0), np.arange(len(beats))]
            near[i] = np.where(np.abs(best - beats) <= 0.1 * fs, best, np.nan)
        out[name] = (np.nanmin(near, 0) if earliest else np.nanmax(near, 0)).astype(np.int64)
    return out


def expert_points_for(record: Record, lead: str) -> Points:
    """The scored expert points: the lead's own annotations, or the all-lead ones (QTDB)."""
    waves = record.annotations.waves if record.annotations else {}
    wanted = canonical_lead(lead)
    if wanted in waves:
        return waves[wanted]
    if "all" in waves:
        return waves["all"]
    if waves:
        return next(iter(waves.values()))
    return {}


def _truth(record: Record) -> dict | None:
    return record.extra.get("truth") if record.database == "synthetic" else None


def _against_lead(record: Record, reference: str) -> bool:
    """Are the record's intervals compared with one lead's own annotations (not ground truth, not global)?"""
    return reference == "lead" and not _truth(record)


def interval_reference(record: Record, lead: str, reference: str, regions: list[tuple[int, int]]) -> dict[str, float]:
    """Record-level HR/PR/QRS/QT to compare against: synthetic ground truth; or from the expert points,
    'lead' (the scored lead's own annotations) or 'global' (earliest onset / latest offset over all
    annotated leads where the database annotates leads separately; QTDB's are already all-lead)."""
    if _truth(record):
        return _truth_intervals(_truth(record))
    waves = record.annotations.waves if record.annotations else {}
    if reference == "global" and canonical_lead(lead) in waves and len(waves) > 1:
        expert = multilead_expert_points(waves, lead, record.fs)
    else:
        expert = expert_points_for(record, lead)
    return record_intervals({f: _inside(v, regions) for f, v in expert.items()}, record.fs)


def score_method(name: str, records: Sequence[Record], result: MethodResult, lead: str,
                 reference: str = "lead") -> MethodScore:
    points = {f: PointScore() for f in SCORED}
    errors: dict[str, list[float]] = {k: [] for k in INTERVALS}
    within_all = []
    for record, found, for_intervals in zip(records, result.points, result.interval_points):
        expert = expert_points_for(record, lead)
        annotations = record.annotations
        regions = annotated_regions(expert, record.fs, annotations.annotated_range if annotations else None)
        for f in SCORED:
            points[f].add(np.asarray(expert.get(f, []), np.int64), np.asarray(found.get(f, []), np.int64), record.fs,
                          regions)
        expected = interval_reference(record, lead, reference, regions)
        ours = record_intervals({f: _inside(v, regions) for f, v in for_intervals.items()}, record.fs)
        ok = True
        for k in INTERVALS:
            err = abs(ours[k] - expected[k])
            errors[k].append(err)
            ok &= bool(err <= TOLERANCE[k]) if math.isfinite(expected[k]) else True
        within_all.append(ok)
    rate = len(records) / result.seconds if result.seconds > 0 else math.nan
    return MethodScore(name, points, errors, within_all, rate)


def _truth_intervals(truth: dict) -> dict[str, float]:
    names = {"heart_rate": "hr_bpm", "pr_interval": "pr_ms", "qrs_duration": "qrs_ms", "qt_interval": "qt_ms"}
    return {k: float(truth.get(v, math.nan)) if truth.get(v) is not None else math.nan for k, v in names.items()}


def run_expert(records: Sequence[Record], lead: str) -> MethodResult:
    """The experts' own annotations of another lead, scored like a method: how far the reference itself
    moves from one lead to its neighbour (LUDB annotates every lead by itself), the floor any method
    scored on one lead's annotations meets. Records without that lead's annotations give no points."""
    points = []
    for r in records:
        waves = r.annotations.waves if r.annotations else {}
        own = waves.get(canonical_lead(lead), {})
        points.append({f: np.sort(np.asarray(own.get(f, []), np.int64)) for f in FIDUCIALS})
    return MethodResult(points, points, 0.0)


def run_method(name: str, records: Sequence[Record], lead: str, reference: str = "lead") -> MethodResult:
    """'heartfast', 'neurokit-<ecg_delineate method>' (dwt, prominence, cwt, peak) or 'expert-<lead>'."""
    if name == "heartfast":
        return run_heartfast(records, lead, reference=reference)
    if name.startswith("neurokit-"):
        return run_neurokit(records, lead, name.removeprefix("neurokit-"))
    if name.startswith("expert-"):
        return run_expert(records, name.removeprefix("expert-"))
    raise ValueError(f"unknown delineation method {name!r}")


def evaluate(records: Sequence[Record], lead: str = "II",
             methods: Sequence[str] = ("heartfast", "neurokit-dwt", "neurokit-prominence"),
             progress: Callable[[str], None] | None = None, reference: str = "lead") -> list[MethodScore]:
    """Run each method on the same records and score it; the records must carry annotations or truth."""
    scores = []
    for name in methods:
        if progress:
            progress(name)
        result = run_method(name, records, lead, reference)
        scores.append(score_method(name, records, result, lead, reference))
    return scores


# ---------------------------------------------------------------------------------------------- tables

def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_tables(scores: Sequence[MethodScore], title: str) -> str:
    """Plain-text tables: fiducial points (Se, PPV, mean ± SD ms) and record-level intervals."""
    lines = [title, "", f"{'point':<9}" + "".join(f"{s.name:>34}" for s in scores),
             f"{'':<9}" + "".join(f"{'Se%  PPV%  mean±SD ms':>34}" for _ in scores)]
    for f in SCORED:
        row = f"{f:<9}"
        for s in scores:
            p = s.points[f]
            cell = (f"{_fmt(100 * p.sensitivity, '.1f')} {_fmt(100 * p.ppv, '.1f')} "
                    f"{_fmt(p.mean_ms, '+.1f')}±{_fmt(p.sd_ms, '.1f')}")
            row += f"{cell:>34}"
        lines.append(row)
    lines += ["", f"{'interval':<14}" + "".join(f"{s.name:>34}" for s in scores),
              f"{'':<14}" + "".join(f"{'MAE   within tolerance':>34}" for _ in scores)]
    summaries = [s.summary() for s in scores]
    for k in INTERVALS:
        row = f"{k + ' ±' + format(TOLERANCE[k], 'g'):<14}"
        for m in summaries:
            iv = m["intervals"][k]
            row += f"{_fmt(iv['mae'], '.1f') + ' ' + iv['unit'] + '   ' + _fmt(100 * iv['within'], '.0f') + '%':>34}"
        lines.append(row)
    lines.append(f"{'all four':<14}" + "".join(f"{_fmt(100 * m['within_all'], '.0f') + '%':>34}" for m in summaries))
    lines.append(f"{'records/s':<14}" + "".join(f"{_fmt(m['records_per_s'], '.1f'):>34}" for m in summaries))
    return "\n".join(lines)


def to_json(scores: Sequence[MethodScore], **meta) -> dict:
    return {**meta, "methods": [s.summary() for s in scores]}


