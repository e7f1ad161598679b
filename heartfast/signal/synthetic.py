"""Synthetic 12-lead ECGs with known ground truth: the project's embedded default data.

    batch = generate(1000, seed=0)                 # SyntheticBatch: signals [n, 12, T] float32 + truth
    records = generate_records(8, seed=1, findings=["AFIB"])

Morphology: each wave is a sum of Gaussians of a 3-D cardiac dipole projected onto the lead vectors
(synthetic_morphology), so limb leads obey Einthoven and Goldberger exactly. Rhythm: RR series with
variability, AF, PVCs (synthetic_rhythm). Every step is batched over records; the only Python loops run
over a fixed handful of findings, and over records when Record objects are built.

Ground truth is measured on the noise-free waveform that was synthesised, not copied from the design
parameters: intervals come from the global fiducials of the dominant beat template, the axis from the net
QRS area in leads I and aVF, the rate from the beats inside the record (see `SyntheticBatch.truth`).
Labels are PTB-XL SCP codes (synthetic_labels).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from heartfast.io.record import FIDUCIALS, LEADS_12, Annotations, Record
from heartfast.signal.synthetic_labels import scp_label, report_text
from heartfast.signal.synthetic_morphology import (
    Waves, derive_12_leads, direction, global_qrs_peak, independent_lead_matrix, measure_fiducials,
    render_template, rotate_frontal, to_12_leads,
)
from heartfast.signal.synthetic_rhythm import (
    BeatTrain, draw_beats, draw_noise_levels, electrode_noise, fibrillatory_waves, render_beats,
)

RHYTHMS: tuple[str, ...] = ("SR", "SBRAD", "STACH", "AFIB")
FINDINGS: tuple[str, ...] = (
    "SBRAD", "STACH", "AFIB", "1AVB", "CLBBB", "CRBBB", "LVH", "STE_", "STD_", "INVT", "PVC", "LVOLT", "LAD", "RAD",
)
# Pairs that cannot occur together (the second is dropped when drawing at random, refused when asked for).
CONFLICTS: tuple[tuple[str, str], ...] = (
    ("SBRAD", "STACH"), ("AFIB", "SBRAD"), ("AFIB", "STACH"), ("AFIB", "1AVB"), ("CLBBB", "CRBBB"),
    ("CLBBB", "LVH"), ("CLBBB", "STE_"), ("CLBBB", "STD_"), ("CLBBB", "INVT"), ("LVH", "LVOLT"),
    ("STE_", "STD_"), ("LAD", "RAD"),
)
_RANDOM_RHYTHM_P = {"SBRAD": 0.12, "STACH": 0.12, "AFIB": 0.16}   # the rest is normal sinus rhythm
_RANDOM_FINDING_P = 0.08                                          # each non-rhythm finding, independently

PRE_S, POST_S = 0.5, 0.7       # template window around the anchor (QRS centre)
_CHUNK = 32                    # records rendered together (keeps the working set in cache)


def _index(name: str) -> int:
    return FINDINGS.index(name)


def _flags_from_names(findings: Sequence[str] | Sequence[Sequence[str]], n: int) -> torch.Tensor:
    """Findings for every record (one list) or per record (n lists) -> [n, F] bool, validated."""
    per_record = [list(findings)] * n if all(isinstance(f, str) for f in findings) else [list(f) for f in findings]
    if len(per_record) != n:
        raise ValueError(f"findings: got {len(per_record)} per-record lists for n={n} records")
    flags = torch.zeros((n, len(FINDINGS)), dtype=torch.bool)
    for i, names in enumerate(per_record):
        for name in names:
            if name in ("SR", "NORM"):
                continue
            if name not in FINDINGS:
                raise ValueError(f"findings: unknown finding {name!r}; known: SR, NORM, {', '.join(FINDINGS)}")
            flags[i, _index(name)] = True
        for a, b in CONFLICTS:
            if a in names and b in names:
                raise ValueError(f"findings: {a} and {b} cannot occur in the same record")
    return flags


def _random_flags(gen: torch.Generator, n: int) -> torch.Tensor:
    flags = torch.rand((n, len(FINDINGS)), generator=gen) < _RANDOM_FINDING_P
    rhythm_draw = torch.rand(n, generator=gen)
    edge = 0.0
    for name, p in _RANDOM_RHYTHM_P.items():
        flags[:, _index(name)] = (rhythm_draw >= edge) & (rhythm_draw < edge + p)
        edge += p
    for a, b in CONFLICTS:
        flags[:, _index(b)] &= ~flags[:, _index(a)]
    return flags


@dataclass
class Design:
    """Target parameters per record (float64 [n]); the truth is measured on what they produce."""

    flags: torch.Tensor
    hr_bpm: torch.Tensor
    pr_s: torch.Tensor
    qrs_s: torch.Tensor
    qtc_s: torch.Tensor
    axis_deg: torch.Tensor
    age: torch.Tensor
    male: torch.Tensor

    def has(self, name: str) -> torch.Tensor:
        return self.flags[:, _index(name)]


def _u(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def _pick(conditions: list[tuple[torch.Tensor, torch.Tensor]], default: torch.Tensor) -> torch.Tensor:
    out = default
    for mask, value in conditions:
        out = torch.where(mask, value, out)
    return out


def draw_design(gen: torch.Generator, flags: torch.Tensor) -> Design:
    """Target rate, intervals, axis, age and sex for records with the given findings flags."""
    n = flags.shape[0]

    def has(name: str) -> torch.Tensor:
        return flags[:, _index(name)]

    hr_bpm = _pick([(has("SBRAD"), _u(gen, n, 42, 55)), (has("STACH"), _u(gen, n, 106, 140)),
                    (has("AFIB"), _u(gen, n, 70, 125))], _u(gen, n, 63, 95))
    pr_s = torch.where(has("1AVB"), _u(gen, n, 0.235, 0.32), _u(gen, n, 0.135, 0.185))
    qrs_s = _pick([(has("CLBBB"), _u(gen, n, 0.14, 0.17)), (has("CRBBB"), _u(gen, n, 0.13, 0.16))],
                  _u(gen, n, 0.08, 0.1))
    qtc_s = _u(gen, n, 0.38, 0.44)
    axis_deg = _pick([(has("LAD"), _u(gen, n, -75, -42)), (has("RAD"), _u(gen, n, 102, 150))], _u(gen, n, -15, 75))
    older = has("AFIB") | has("LVH") | has("CLBBB") | has("STE_") | has("STD_")
    age = torch.where(older, _u(gen, n, 55, 90), _u(gen, n, 18, 85)).round()
    male = torch.rand(n, generator=gen) < 0.5
    return Design(flags=flags, hr_bpm=hr_bpm, pr_s=pr_s, qrs_s=qrs_s, qtc_s=qtc_s, axis_deg=axis_deg, age=age, male=male)


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.float64)


def _full(n: int, value: float) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.float64)


def _normal_waves(gen: torch.Generator, d: Design) -> Waves:
    """The dominant (supraventricular) beat of every record, before axis rotation and amplitude scaling."""
    n = d.flags.shape[0]
    w, lbbb, rbbb = d.qrs_s, d.has("CLBBB"), d.has("CRBBB")
    normal_w = torch.where(rbbb, _u(gen, n, 0.085, 0.095), w)
    qrs_on = -0.55 * normal_w
    # QRS: septal q, main R, terminal S, and a fourth wave (LBBB's second, notched R; RBBB's terminal R')
    q = (-0.38 * normal_w, 0.09 * normal_w, 0.12 * direction(_full(n, -160), _full(n, 40)))
    r = (_zeros(n), 0.13 * normal_w, direction(d.axis_deg, _u(gen, n, -25, -5)))
    s = (0.33 * normal_w, 0.10 * normal_w, 0.30 * direction(d.axis_deg - 150, _full(n, -55)))
    fourth = (_zeros(n), 0.1 * normal_w, torch.zeros((n, 3), dtype=torch.float64))
    lbbb_r1 = (-0.14 * w, 0.12 * w, 0.75 * direction(d.axis_deg - 15, _full(n, -35)))
    lbbb_r2 = (0.16 * w, 0.13 * w, 0.85 * direction(d.axis_deg + 5, _full(n, -45)))
    late = w - normal_w
    rbbb_r = (0.30 * normal_w + 0.55 * late, 0.012 + 0.25 * late, 0.45 * direction(_full(n, 190), _full(n, 50)))
    parts = []
    for normal, left, right in ((q, None, None), (r, lbbb_r1, None), (s, None, None), (fourth, lbbb_r2, rbbb_r)):
        centre, width, dipole = normal
        if left is None:   # wave absent in LBBB
            dipole = torch.where(lbbb[:, None], torch.zeros_like(dipole), dipole)
        else:
            centre, width = torch.where(lbbb, left[0], centre), torch.where(lbbb, left[1], width)
            dipole = torch.where(lbbb[:, None], left[2], dipole)
        if right is not None:
            centre, width = torch.where(rbbb, right[0], centre), torch.where(rbbb, right[1], width)
            dipole = torch.where(rbbb[:, None], right[2], dipole)
        parts.append((centre, width, dipole))
    qrs_centre = torch.stack([p[0] for p in parts], 1)
    qrs_width = torch.stack([p[1] for p in parts], 1)
    qrs_dipole = torch.stack([p[2] for p in parts], 1)
    qrs_off = torch.where(lbbb | rbbb, qrs_on + w, -qrs_on)

    # P: right then left atrium; absent in AF
    p_sigma = _u(gen, n, 0.017, 0.022)
    p1 = qrs_on - d.pr_s + 2.15 * p_sigma
    p_amp = torch.where(d.has("AFIB"), _zeros(n), _u(gen, n, 0.08, 0.14))
    p_dipole = torch.stack([p_amp[:, None] * direction(_full(n, 65), _full(n, 35)),
                            0.8 * p_amp[:, None] * direction(_full(n, 40), _full(n, -45))], 1)

    # T: slow ascent, fast descent; ends about QT after QRS onset (QT from QTc by Bazett)
    qt = d.qtc_s * torch.sqrt(60.0 / d.hr_bpm)
    stretch = (qt / 0.4).clamp(0.75, 1.3)
    sigma2 = 0.028 * stretch
    t2 = qrs_on + qt - 2.3 * sigma2
    t1 = t2 - 0.045 * stretch
    t_amp = _u(gen, n, 0.25, 0.5)
    t_dir = direction(0.5 * d.axis_deg + 20, _u(gen, n, 5, 30))
    qrs_net = (qrs_dipole * (qrs_width[..., None] * math.sqrt(2 * math.pi))).sum(1)
    discordant = -qrs_net / qrs_net.norm(dim=-1, keepdim=True)
    t_dir = _pick([(lbbb[:, None], discordant), (rbbb[:, None], direction(0.5 * d.axis_deg + 20, _full(n, -25))),
                   (d.has("INVT")[:, None], -t_dir)], t_dir)
    t_dipole = torch.stack([0.65 * t_amp[:, None] * t_dir, 0.55 * t_amp[:, None] * t_dir], 1)

    # ST plateau: elevation (anterior or inferior), diffuse depression, LBBB's discordant shift
    anterior = torch.rand(n, generator=gen) < 0.5
    ste_dir = torch.where(anterior[:, None], direction(_full(n, 60), _full(n, 65)), direction(_full(n, 95), _full(n, -5)))
    st_dipole = _pick([(d.has("STE_")[:, None], _u(gen, n, 0.22, 0.35)[:, None] * ste_dir),
                       (d.has("STD_")[:, None], -_u(gen, n, 0.2, 0.3)[:, None] * direction(_full(n, 40), _full(n, 15))),
                       (lbbb[:, None], 0.12 * discordant)], torch.zeros((n, 3), dtype=torch.float64))
    return Waves(
        p_centre=torch.stack([p1, p1 + 0.03], 1), p_width=torch.stack([p_sigma, p_sigma], 1), p_dipole=p_dipole,
        qrs_centre=qrs_centre, qrs_width=qrs_width, qrs_dipole=qrs_dipole,
        t_centre=torch.stack([t1, t2], 1), t_width=torch.stack([0.05 * stretch, sigma2], 1), t_dipole=t_dipole,
        st_start=qrs_off, st_end=t2 - 0.02, st_dipole=st_dipole,
    )


def _pvc_waves(gen: torch.Generator, n: int, amplitude: torch.Tensor) -> Waves:
    """Premature ventricular beats: wide, no P, discordant T; right- or left-ventricular origin."""
    frontal = _u(gen, n, 40, 130)
    elevation = torch.where(torch.rand(n, generator=gen) < 0.6, _full(n, -40), _full(n, 40))
    main = direction(frontal, elevation)
    qrs_dipole = torch.stack([0.8 * main, direction(frontal + 25, elevation - 10), torch.zeros_like(main),
                              torch.zeros_like(main)], 1) * amplitude[:, None, None]
    qrs_centre = torch.stack([_full(n, -0.03), _full(n, 0.035), _zeros(n), _zeros(n)], 1)
    qrs_width = torch.stack([_full(n, 0.024), _full(n, 0.028), _full(n, 0.01), _full(n, 0.01)], 1)
    t_amp = _u(gen, n, 0.3, 0.5)[:, None]
    t_dipole = torch.stack([-0.7 * t_amp * main, -0.6 * t_amp * main], 1)
    zeros3 = torch.zeros((n, 2, 3), dtype=torch.float64)
    return Waves(
        p_centre=torch.zeros((n, 2), dtype=torch.float64), p_width=torch.full((n, 2), 0.02, dtype=torch.float64),
        p_dipole=zeros3, qrs_centre=qrs_centre, qrs_width=qrs_width, qrs_dipole=qrs_dipole,
        t_centre=torch.stack([_full(n, 0.23), _full(n, 0.28)], 1), t_width=torch.stack([_full(n, 0.05), _full(n, 0.032)], 1),
        t_dipole=t_dipole, st_start=_full(n, 0.09), st_end=_full(n, 0.25), st_dipole=torch.zeros((n, 3), dtype=torch.float64),
    )


def _frontal_area_angle(qrs_dipole: torch.Tensor, qrs_width: torch.Tensor) -> torch.Tensor:
    """Frontal angle (deg) of the net QRS area vector (Gaussian areas are sigma * sqrt(2 pi))."""
    net = (qrs_dipole * qrs_width[..., None]).sum(1)
    return torch.rad2deg(torch.atan2(net[:, 1], net[:, 0]))


def _qrs_scale(gen: torch.Generator, d: Design, qrs_leads: torch.Tensor) -> torch.Tensor:
    """Per-record factor for the QRS so voltages match the design: Sokolow-Lyon (SV1 + max RV5/RV6)
    1.5-3.0 mV normally, 3.8-5.0 mV in LVH; low voltage: every limb lead peak-to-peak < 0.5 mV and every
    precordial lead < 1.0 mV."""
    n = qrs_leads.shape[0]
    sokolow = (-qrs_leads[:, 6].amin(-1)).clamp(min=0) + qrs_leads[:, 10:12].amax(-1).amax(-1)
    peak_to_peak = qrs_leads.amax(-1) - qrs_leads.amin(-1)
    limb, chest = peak_to_peak[:, :6].amax(-1), peak_to_peak[:, 6:].amax(-1)
    normal = torch.maximum(_u(gen, n, 1.5, 3.0) / sokolow, 0.7 / limb).minimum(3.3 / sokolow)
    lvh = _u(gen, n, 3.8, 5.0) / sokolow
    low = torch.minimum(_u(gen, n, 0.3, 0.42) / limb, 0.85 / chest)
    return _pick([(d.has("LVH"), lvh), (d.has("LVOLT"), low)], normal)


@dataclass
class SyntheticBatch:
    """n synthetic records as arrays.

    signals [n, 12, T] float32 mV in LEADS_12 order; flags [n, len(FINDINGS)] bool (design findings);
    beats: anchors, types and which beats touch the record; fiducials [n, 2 beat types, 12, 9] template
    offsets (sample of FIDUCIALS relative to the beat anchor, -1 absent); r_offset [n, 2] the R peak
    relative to the anchor; truth: float64 [n] tensors of hr_bpm, rr_ms, pr_ms (nan without P waves),
    qrs_ms, qt_ms, qtc_bazett_ms, axis_deg.

    Axis: the frontal angle of the net QRS area vector, atan2(2 * aVF / sqrt(3), I) with I and aVF the
    signed areas between the global QRS onset and offset (aVF's lead vector is sqrt(3)/2 long).
    """

    signals: torch.Tensor
    fs: float
    seed: int
    flags: torch.Tensor
    beats: BeatTrain
    fiducials: torch.Tensor
    r_offset: torch.Tensor
    truth: dict[str, torch.Tensor]
    age: torch.Tensor
    male: torch.Tensor
    noise: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return int(self.signals.shape[0])

    def findings(self, i: int) -> list[str]:
        return [name for name, on in zip(FINDINGS, self.flags[i].tolist()) if on]

    def rhythm(self, i: int) -> str:
        found = [r for r in RHYTHMS[1:] if self.flags[i, _index(r)]]
        return found[0] if found else "SR"

    def heart_axis(self, i: int) -> str:
        axis = float(self.truth["axis_deg"][i])
        return "LAD" if axis < -30 else "RAD" if axis > 90 else "MID"

    def truth_dict(self, i: int) -> dict:
        out = {}
        for key, values in self.truth.items():
            v = float(values[i])
            out[key] = None if math.isnan(v) else round(v, 1)
        out["rhythm"] = self.rhythm(i)
        out["findings"] = self.findings(i)
        return out

    def annotations(self, i: int) -> Annotations:
        """Fiducials per lead of every beat inside the record; a fiducial outside the record is left out,
        and a fiducial with no point at all (P waves in AF) has no key, as in the LUDB reader."""
        n_samples = self.signals.shape[-1]
        touches = self.beats.touches[i]
        anchors = self.beats.anchors[i][touches].numpy()
        kinds = self.beats.is_pvc[i][touches].long().numpy()
        offsets = self.fiducials[i].numpy()[kinds]                      # [beats, 12, 9]
        positions = anchors[:, None, None] - int(round(PRE_S * self.fs)) + offsets
        valid = (offsets >= 0) & (positions >= 0) & (positions < n_samples)
        has_points = valid.any(0).tolist()                              # [12][9]
        waves = {lead: {fid: positions[:, li, fi][valid[:, li, fi]]
                        for fi, fid in enumerate(FIDUCIALS) if has_points[li][fi]}
                 for li, lead in enumerate(LEADS_12)}
        r_peaks = anchors - int(round(PRE_S * self.fs)) + self.r_offset[i].numpy()[kinds]
        inside = (r_peaks >= 0) & (r_peaks < n_samples)
        symbols = ["V" if k else "N" for k in kinds[inside]]
        return Annotations(waves=waves, beat_samples=r_peaks[inside].astype(np.int64), beat_symbols=symbols,
                           annotated_range=(0, n_samples))

    def record(self, i: int) -> Record:
        truth = self.truth_dict(i)
        findings = truth["findings"]
        codes = [c for c in findings if c not in ("LAD", "RAD", *RHYTHMS)]
        axis = self.heart_axis(i)
        if not codes and axis == "MID":
            codes = ["NORM"]
        codes.append(truth["rhythm"])
        return Record(
            id=synthetic_record_id(self.seed, i), signal=self.signals[i].numpy(), fs=self.fs, leads=LEADS_12,
            database="synthetic", patient_id="synp-" + synthetic_record_id(self.seed, i)[4:], age=float(self.age[i]), sex="M" if bool(self.male[i]) else "F",
            labels=[scp_label(c) for c in codes], report=report_text(codes, axis, truth),
            annotations=self.annotations(i),
            extra={"truth": truth, "heart_axis": axis,
                   "noise": {k: round(float(v[i]), 4) for k, v in self.noise.items()}},
        )

    def records(self) -> list[Record]:
        return [self.record(i) for i in range(len(self))]


def _measured_truth(fiducials: torch.Tensor, leads: torch.Tensor, beats: BeatTrain, n_samples: int,
                    fs: float, has_p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Intervals from the dominant template's global fiducials, axis from its net QRS area, rate from the
    beats whose anchor lies inside the record."""
    f = fiducials[:, 0, 0].double()                      # global onsets/offsets are equal in every lead
    ms = 1000.0 / fs
    on, off = FIDUCIALS.index("QRS_on"), FIDUCIALS.index("QRS_off")
    qrs_ms = (f[:, off] - f[:, on]) * ms
    pr_ms = torch.where(has_p, (f[:, on] - f[:, FIDUCIALS.index("P_on")]) * ms, torch.full_like(qrs_ms, math.nan))
    qt_ms = (f[:, FIDUCIALS.index("T_off")] - f[:, on]) * ms
    inside = (beats.anchors >= 0) & (beats.anchors < n_samples)
    pair = inside[:, 1:] & inside[:, :-1]
    rr = (beats.anchors[:, 1:] - beats.anchors[:, :-1]).double() * ms
    rr_ms = (rr * pair).sum(1) / pair.sum(1).clamp(min=1)
    window = torch.arange(leads.shape[-1])[None, :]
    in_qrs = (window >= fiducials[:, 0, 0, on, None]) & (window <= fiducials[:, 0, 0, off, None])
    area = (leads.double() * in_qrs[:, None, :]).sum(-1)
    axis = torch.rad2deg(torch.atan2(2 * area[:, 5] / math.sqrt(3), area[:, 0]))
    return {"hr_bpm": 60000.0 / rr_ms, "rr_ms": rr_ms, "pr_ms": pr_ms, "qrs_ms": qrs_ms, "qt_ms": qt_ms,
            "qtc_bazett_ms": qt_ms / torch.sqrt(rr_ms / 1000.0), "axis_deg": axis}


def generate(n: int, seed: int, fs: float = 500.0, duration_s: float = 10.0,
             findings: Sequence[str] | Sequence[Sequence[str]] | None = None, noise: float = 1.0) -> SyntheticBatch:
    """n synthetic 12-lead ECGs, deterministic per (n, seed, fs, duration_s, findings, noise).

    findings: None draws a random mix (about 60 % sinus rhythm, half the records with a finding); a list of
    names (SR, NORM or FINDINGS) applies to every record; n lists give each record its own. noise scales
    baseline wander, muscle noise and powerline hum (0 gives clean signals).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if duration_s < 3.0:
        raise ValueError(f"duration_s must be >= 3 s (two beats at 40 bpm), got {duration_s}")
    gen = torch.Generator().manual_seed(int(seed))
    flags = _random_flags(gen, n) if findings is None else _flags_from_names(findings, n)
    d = draw_design(gen, flags)
    lead_matrix = independent_lead_matrix()
    pre, post = int(round(PRE_S * fs)), int(round(POST_S * fs))
    times = (torch.arange(pre + post, dtype=torch.float64) - pre) / fs

    normal = _normal_waves(gen, d)
    rotation = d.axis_deg - _frontal_area_angle(normal.qrs_dipole, normal.qrs_width)
    normal.qrs_dipole = rotate_frontal(normal.qrs_dipole, rotation)
    qrs_leads = to_12_leads(render_template(normal, times).qrs, lead_matrix)
    scale = _qrs_scale(gen, d, qrs_leads)
    normal.qrs_dipole = normal.qrs_dipole * scale[:, None, None]
    low = d.has("LVOLT")[:, None, None]
    normal.t_dipole = torch.where(low, 0.5 * normal.t_dipole, normal.t_dipole)
    r_amplitude = normal.qrs_dipole.norm(dim=-1).amax(-1)
    pvc = _pvc_waves(gen, n, 1.4 * r_amplitude)

    templates = [render_template(normal, times), render_template(pvc, times)]
    fiducials = torch.stack([measure_fiducials(t, lead_matrix) for t in templates], 1)
    r_offset = torch.stack([global_qrs_peak(t, lead_matrix) for t in templates], 1)
    normal_total, pvc_total = templates[0].total(), templates[1].total()
    dominant_leads = to_12_leads(normal_total, lead_matrix)

    n_samples = int(round(duration_s * fs))
    beats = draw_beats(gen, 60.0 / d.hr_bpm, d.has("AFIB"), torch.where(d.has("PVC"), _u(gen, n, 0.08, 0.2), _zeros(n)),
                       duration_s, fs, pre, post)
    af = d.has("AFIB")
    levels = draw_noise_levels(gen, n, noise)
    signals = torch.empty((n, len(LEADS_12), n_samples), dtype=torch.float32)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(n, start + _CHUNK))
        dipole = render_beats(normal_total[rows], pvc_total[rows], beats.rows(rows), n_samples, pre, post)
        chunk_af = af[rows]
        if bool(chunk_af.any()):
            dipole[chunk_af] += fibrillatory_waves(gen, int(chunk_af.sum()), n_samples, fs).float()
        independent = torch.matmul(lead_matrix.float(), dipole)
        if noise > 0:
            independent += electrode_noise(gen, levels.rows(rows), independent.shape[1], n_samples, fs)
        derive_12_leads(independent, out=signals[rows])
    truth = _measured_truth(fiducials, dominant_leads, beats, n_samples, fs, ~af)
    return SyntheticBatch(
        signals=signals, fs=float(fs), seed=int(seed), flags=flags, beats=beats, fiducials=fiducials,
        r_offset=r_offset, truth=truth, age=d.age, male=d.male,
        noise={"baseline_mv": levels.baseline_mv, "muscle_mv": levels.muscle_mv,
               "powerline_mv": levels.powerline_mv, "powerline_hz": levels.powerline_hz},
    )


def synthetic_record_id(seed: int, index: int) -> str:
    """The id of record `index` of `generate(n, seed)` (known without generating it)."""
    return f"syn-{seed}-{index:06d}"


def generate_records(n: int, seed: int, fs: float = 500.0, duration_s: float = 10.0,
                     findings: Sequence[str] | Sequence[Sequence[str]] | None = None, noise: float = 1.0) -> list[Record]:
    """n synthetic `Record`s (database 'synthetic', SCP labels, fiducial annotations, extra['truth'])."""
    return generate(n, seed, fs=fs, duration_s=duration_s, findings=findings, noise=noise).records()
