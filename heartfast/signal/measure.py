"""Grounding measurements: GEM's 14 ECG features per record and per lead, plus axis, low voltage, RR irregularity.

    from heartfast.signal.measure import measure, measure_record
    m = measure_record(record)                # Measurements
    m.get("qrs_duration").value, m.lead("V1")["t_amplitude"], m.to_dict()

Every `Measurement` carries its unit and the beats (indices into `Measurements.beat_samples`, the R
anchors in samples) its value came from, so generated text can cite "QRS 96 ms (beats 2-9)".
Values are medians over the beats where the feature could be measured (heart rate: from the mean RR);
NaN where none could.
Global intervals use the multi-lead fiducials (earliest onsets and latest offsets as a 12-lead
reading does); per-lead values use that lead's own fiducials (its QRS boundaries pulled halfway to the
global ones, see heartfast.signal.delineate) and amplitudes against the PR-segment level.
Names are stable (instruction data cites them): heart_rate, rr1, rr2, p_amplitude, p_duration,
pr_interval, qrs_amplitude, qrs_duration, t_amplitude, t_duration, st_duration, st_level, st_form,
qt_interval, qtc_bazett, qtc_fridericia, qrs_axis, low_voltage, rr_irregularity.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from heartfast.io.record import LEADS_12, Record
from heartfast.signal.delineate import MISSING, Delineation, delineate

ST_POINT_S = 0.06            # ST level measured at J + 60 ms
ST_SLOPE_S = (0.04, 0.08)    # ST slope between J + 40 ms and J + 80 ms
ST_ELEVATED_MV = 0.1
ST_DEPRESSED_MV = -0.05
ST_SLOPE_MV_PER_S = 0.5      # |slope| below this is horizontal
LOW_VOLTAGE_LIMB_MV = 0.5
LOW_VOLTAGE_CHEST_MV = 1.0
LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
CHEST_LEADS = ("V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class Measurement:
    """One measured value: `lead` None for a record-level (multi-lead) value; `beats` it came from."""

    name: str
    value: float | str | bool
    unit: str
    lead: str | None
    beats: tuple[int, ...]

    def to_dict(self) -> dict:
        value = self.value
        if isinstance(value, float) and math.isnan(value):
            value = None
        return {"name": self.name, "value": value, "unit": self.unit, "lead": self.lead, "beats": list(self.beats)}


@dataclass
class Measurements:
    """All measurements of one record; `beat_samples` are the R anchors (samples at `fs`)."""

    fs: float
    beat_samples: tuple[int, ...]
    items: list[Measurement] = field(default_factory=list)

    def global_(self) -> dict[str, Measurement]:
        return {m.name: m for m in self.items if m.lead is None}

    def lead(self, name: str) -> dict[str, Measurement]:
        return {m.name: m for m in self.items if m.lead == name}

    def get(self, name: str, lead: str | None = None) -> Measurement:
        for m in self.items:
            if m.name == name and m.lead == lead:
                return m
        raise KeyError(f"no measurement {name!r}" + (f" in lead {lead}" if lead else ""))

    def to_dict(self) -> dict:
        leads = sorted({m.lead for m in self.items if m.lead is not None}, key=_lead_order)
        return {"fs": self.fs, "beat_samples": list(self.beat_samples),
                "global": {k: m.to_dict() for k, m in self.global_().items()},
                "leads": {name: {k: m.to_dict() for k, m in self.lead(name).items()} for name in leads}}


def _lead_order(name: str) -> int:
    return LEADS_12.index(name) if name in LEADS_12 else len(LEADS_12)


# ---------------------------------------------------------------------------------------------- tensors

def _ms(later: torch.Tensor, earlier: torch.Tensor, fs: float) -> torch.Tensor:
    ok = (later >= 0) & (earlier >= 0) & (later > earlier)
    values = (later - earlier).float() * 1000.0 / fs
    return torch.where(ok, values, torch.full_like(values, math.nan))


def _sample(d: Delineation, points: torch.Tensor) -> torch.Tensor:
    """Level (mV, minus the PR-segment baseline) of d.signal at fiducial samples [B, L, K] (NaN if absent)."""
    scale = d.signal_fs / d.fs
    idx = (points.float() * scale).round().long().clamp(0, d.signal.shape[-1] - 1)
    values = d.signal.gather(2, idx.reshape(idx.shape[0], idx.shape[1], -1)).reshape(idx.shape) - d.baseline
    return torch.where(points >= 0, values, torch.full_like(values, math.nan))


def _qrs_stats(d: Delineation) -> tuple[torch.Tensor, torch.Tensor]:
    """Per beat and lead over the global QRS: peak-to-peak amplitude (mV) and net area (mV*s)."""
    scale = d.signal_fs / d.fs
    on, off = d.points["QRS_on"], d.points["QRS_off"]
    width = int(round(0.3 * d.signal_fs))
    start = (on.float() * scale).round().long()
    stop = (off.float() * scale).round().long()
    pos = start[..., None] + torch.arange(width, device=on.device)  # [B, K, W]
    inside = (pos <= stop[..., None]) & (on >= 0)[..., None] & (off >= 0)[..., None]
    b, k = on.shape
    n_leads = d.signal.shape[1]
    idx = pos.clamp(0, d.signal.shape[-1] - 1).reshape(b, 1, k * width).expand(b, n_leads, k * width)
    x = d.signal.gather(2, idx).reshape(b, n_leads, k, width) - d.baseline[..., None]
    inside = inside[:, None]
    p2p = torch.where(inside, x, -math.inf).amax(-1) - torch.where(inside, x, math.inf).amin(-1)
    area = (x * inside).sum(-1) / d.signal_fs
    valid = inside.any(-1)
    return (torch.where(valid, p2p, torch.full_like(p2p, math.nan)),
            torch.where(valid, area, torch.full_like(area, math.nan)))


def _per_beat(d: Delineation) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Global features [B, K] and per-lead features [B, L, K] for every beat (NaN where not measurable)."""
    fs = d.fs
    g, lp = d.points, d.lead_points
    anchors, beat = d.rpeaks.index, d.rpeaks.mask
    nan_k = torch.full(anchors.shape, math.nan, device=anchors.device)
    rr = (anchors[:, 1:] - anchors[:, :-1]).float() * 1000.0 / fs
    rr = torch.where(beat[:, 1:] & beat[:, :-1], rr, torch.full_like(rr, math.nan))
    rr1 = torch.cat([nan_k[:, :1], rr], 1)
    rr2 = torch.cat([rr, nan_k[:, :1]], 1)
    qt = _ms(g["T_off"], g["QRS_on"], fs)
    rr_s = rr1 / 1000.0
    glob = {
        "rr1": rr1, "rr2": rr2,
        "pr_interval": _ms(g["QRS_on"], g["P_on"], fs), "p_duration": _ms(g["P_off"], g["P_on"], fs),
        "qrs_duration": _ms(g["QRS_off"], g["QRS_on"], fs), "t_duration": _ms(g["T_off"], g["T_on"], fs),
        "st_duration": _ms(g["T_on"], g["QRS_off"], fs), "qt_interval": qt,
        "qtc_bazett": qt / rr_s.sqrt(), "qtc_fridericia": qt / rr_s.pow(1.0 / 3.0),
    }
    p2p, area = _qrs_stats(d)
    j = g["QRS_off"][:, None].expand_as(lp["QRS_off"])
    at = lambda s: torch.where(j >= 0, j + int(round(s * fs)), torch.full_like(j, MISSING))  # noqa: E731
    st_early, st_late = _sample(d, at(ST_SLOPE_S[0])), _sample(d, at(ST_SLOPE_S[1]))
    lead = {
        "p_amplitude": _sample(d, lp["P_peak"]), "p_duration": _ms(lp["P_off"], lp["P_on"], fs),
        "pr_interval": _ms(lp["QRS_on"], lp["P_on"], fs),
        "qrs_amplitude": p2p, "qrs_area": area, "qrs_duration": _ms(lp["QRS_off"], lp["QRS_on"], fs),
        "t_amplitude": _sample(d, lp["T_peak"]), "t_duration": _ms(lp["T_off"], lp["T_on"], fs),
        "st_duration": _ms(lp["T_on"], lp["QRS_off"], fs), "st_level": _sample(d, at(ST_POINT_S)),
        "st_slope": (st_late - st_early) / (ST_SLOPE_S[1] - ST_SLOPE_S[0]),
        "qt_interval": _ms(lp["T_off"], lp["QRS_on"], fs),
    }
    glob = {k: torch.where(beat, v, torch.full_like(v, math.nan)) for k, v in glob.items()}
    lead = {k: torch.where(beat[:, None], v, torch.full_like(v, math.nan)) for k, v in lead.items()}
    return glob, lead


# ---------------------------------------------------------------------------------------------- records

UNITS = {"heart_rate": "bpm", "rr1": "ms", "rr2": "ms", "p_amplitude": "mV", "p_duration": "ms",
         "pr_interval": "ms", "qrs_amplitude": "mV", "qrs_duration": "ms", "t_amplitude": "mV",
         "t_duration": "ms", "st_duration": "ms", "st_level": "mV", "st_form": "", "qt_interval": "ms",
         "qtc_bazett": "ms", "qtc_fridericia": "ms", "qrs_axis": "deg", "low_voltage": "", "rr_irregularity": "ratio"}


def _median(values: np.ndarray) -> tuple[float, tuple[int, ...]]:
    ok = np.flatnonzero(np.isfinite(values))
    return (float(np.median(values[ok])) if len(ok) else math.nan), tuple(int(i) for i in ok)


def st_form(level_mv: float, slope_mv_per_s: float) -> str:
    """'elevated'/'depressed'/'normal' by the J+60 ms level, with the ST slope: upsloping/downsloping/horizontal."""
    if math.isnan(level_mv):
        return "unknown"
    kind = "elevated" if level_mv >= ST_ELEVATED_MV else "depressed" if level_mv <= ST_DEPRESSED_MV else "normal"
    if math.isnan(slope_mv_per_s):
        return kind
    shape = ("upsloping" if slope_mv_per_s > ST_SLOPE_MV_PER_S else
             "downsloping" if slope_mv_per_s < -ST_SLOPE_MV_PER_S else "horizontal")
    return f"{kind}, {shape}"


def _to_host(d: Delineation, glob: dict, lead: dict) -> dict:
    """Everything the per-record summaries read, as numpy, in one device-to-host copy per tensor (on a GPU,
    indexing device tensors record by record would synchronise hundreds of times per batch)."""
    return {"beat": d.rpeaks.mask.cpu().numpy(), "index": d.rpeaks.index.cpu().numpy(),
            "active": (d.signal.abs().amax(-1) > 1e-4).cpu().numpy(),
            "glob": {k: v.cpu().numpy() for k, v in glob.items()},
            "lead": {k: v.cpu().numpy() for k, v in lead.items()}}


def _record_measurements(i: int, fs: float, host: dict, leads: Sequence[str]) -> Measurements:
    beat = host["beat"][i]
    samples = tuple(int(s) for s in host["index"][i][beat])
    kept = np.flatnonzero(beat)
    out = Measurements(fs=fs, beat_samples=samples)

    def add(name: str, values: np.ndarray, lead_name: str | None) -> float:
        value, used = _median(values[kept])
        out.items.append(Measurement(name, value, UNITS[name], lead_name, used))
        return value

    g = {k: v[i] for k, v in host["glob"].items()}
    per_lead = {k: v[i] for k, v in host["lead"].items()}
    active = host["active"][i]
    rr_used = np.flatnonzero(np.isfinite(g["rr1"]) & beat)
    rate = float(60000.0 / np.mean(g["rr1"][rr_used])) if len(rr_used) else math.nan
    out.items.append(Measurement("heart_rate", rate, UNITS["heart_rate"], None, tuple(int(k) for k in rr_used)))
    for name in ("rr1", "rr2", "pr_interval", "p_duration", "qrs_duration", "t_duration",
                 "st_duration", "qt_interval", "qtc_bazett", "qtc_fridericia"):
        add(name, g[name], None)
    rr = g["rr1"][kept]
    rr = rr[np.isfinite(rr)]
    irregularity = float(np.std(rr) / np.mean(rr)) if len(rr) > 1 else math.nan
    out.items.append(Measurement("rr_irregularity", irregularity, UNITS["rr_irregularity"], None,
                                 tuple(int(k) for k in kept[1:])))
    amplitudes = {}
    for li, name in enumerate(leads):
        if not active[li]:
            continue
        for feature in ("p_amplitude", "p_duration", "pr_interval", "qrs_amplitude", "qrs_duration",
                        "t_amplitude", "t_duration", "st_duration", "st_level", "qt_interval"):
            value = add(feature, per_lead[feature][li], name)
            if feature == "qrs_amplitude":
                amplitudes[name] = value
        level, used = _median(per_lead["st_level"][li][kept])
        slope, _ = _median(per_lead["st_slope"][li][kept])
        out.items.append(Measurement("st_form", st_form(level, slope), "", name, used))
    # global ST: the lead with the largest ST deviation
    st_levels = {m.lead: m for m in out.items if m.name == "st_level" and m.lead and not math.isnan(m.value)}
    if st_levels:
        worst = max(st_levels.values(), key=lambda m: abs(m.value))
        out.items.append(Measurement("st_level", worst.value, "mV", None, worst.beats))
        form = next(m for m in out.items if m.name == "st_form" and m.lead == worst.lead)
        out.items.append(Measurement("st_form", form.value, "", None, form.beats))
    if "I" in leads and "aVF" in leads and active[leads.index("I")] and active[leads.index("aVF")]:
        area_i, used = _median(per_lead["qrs_area"][leads.index("I")][kept])
        area_f, _ = _median(per_lead["qrs_area"][leads.index("aVF")][kept])
        # aVF's lead vector is sqrt(3)/2 as long as lead I's (hexaxial reference system)
        axis = math.nan if math.isnan(area_i + area_f) else math.degrees(math.atan2(2.0 * area_f / math.sqrt(3.0), area_i))
        out.items.append(Measurement("qrs_axis", axis, "deg", None, used))
    limb = [amplitudes[n] for n in LIMB_LEADS if n in amplitudes and not math.isnan(amplitudes[n])]
    chest = [amplitudes[n] for n in CHEST_LEADS if n in amplitudes and not math.isnan(amplitudes[n])]
    if limb or chest:
        low = (bool(limb) and max(limb) < LOW_VOLTAGE_LIMB_MV) or (bool(chest) and max(chest) < LOW_VOLTAGE_CHEST_MV)
        out.items.append(Measurement("low_voltage", bool(low), "", None, tuple(int(k) for k in kept)))
    for name in ("qrs_amplitude", "p_amplitude", "t_amplitude"):  # record level: the largest lead value
        values = [m for m in out.items if m.name == name and m.lead and not math.isnan(m.value)]
        if values:
            top = max(values, key=lambda m: abs(m.value))
            out.items.append(Measurement(name, top.value, UNITS[name], None, top.beats))
    return out


def measure(signals: torch.Tensor, fs: float, leads: Sequence[str] = LEADS_12) -> list[Measurements]:
    """Measurements of every record in signals [B, L, T] (mV, leads named by `leads`) at fs Hz."""
    if signals.dim() != 3 or signals.shape[1] != len(leads):
        raise ValueError(f"signals must be [B, {len(leads)}, T] for leads {tuple(leads)}, got {tuple(signals.shape)}")
    d = delineate(signals, fs)
    host = _to_host(d, *_per_beat(d))
    return [_record_measurements(i, fs, host, tuple(leads)) for i in range(signals.shape[0])]


def measure_record(record: Record) -> Measurements:
    """Measurements of one Record (its 12 standard leads; missing leads are left out)."""
    signals = torch.from_numpy(record.to_12_leads())[None]
    return measure(signals, record.fs)[0]
