"""Beat templates of the synthetic ECG: waves as Gaussians of a 3-D cardiac dipole, and their fiducials.

Coordinates of the dipole: x points to the patient's left (lead I), y inferior (aVF), z anterior.
Each wave is a sum of Gaussian bumps in time, each carrying a fixed dipole vector; the electrocardiogram is
the projection of the dipole onto lead vectors. Only I, II and V1-V6 are projected; III, aVR, aVL and aVF are
derived from I and II with Einthoven's and Goldberger's equations, so they hold exactly (bit for bit, noise
included: noise is added to the independent leads before the derivation).

A template is one beat on a fixed window of W samples around its anchor (the QRS centre); the record is the
template convolved with a train of weighted impulses (synthetic_rhythm). Fiducial points are measured on the
noise-free template, wave by wave, the way one reads them on the global (all-lead) complex: the first and
last sample where any of the 12 leads leaves the baseline by more than a fraction of that wave's largest
deflection (P 10 %, QRS 5 %, T 10 %).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from heartfast.io.record import FIDUCIALS, LEADS_12

# Lead vectors of the independent leads I, II, V1..V6 in dipole coordinates (x left, y inferior, z anterior).
_PRECORDIAL_ANGLES_DEG = (115.0, 95.0, 75.0, 55.0, 30.0, 5.0)   # in the horizontal plane, from left to anterior
_PRECORDIAL_GAINS = (0.9, 1.3, 1.4, 1.3, 1.1, 0.9)              # chest electrodes sit closer to the heart


def independent_lead_matrix() -> torch.Tensor:
    """[8, 3] float64: rows are the lead vectors of I, II, V1..V6."""
    rows = [(1.0, 0.0, 0.0), (math.cos(math.radians(60)), math.sin(math.radians(60)), 0.0)]
    for angle, gain in zip(_PRECORDIAL_ANGLES_DEG, _PRECORDIAL_GAINS):
        a = math.radians(angle)
        rows.append((gain * math.cos(a), 0.0, gain * math.sin(a)))
    return torch.tensor(rows, dtype=torch.float64)


def derive_12_leads(independent: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """[..., 8, T] (I, II, V1..V6) -> [..., 12, T] in LEADS_12 order via Einthoven and Goldberger:
    III = II - I, aVR = -(I + II) / 2, aVL = I - II / 2, aVF = II - I / 2 (written into `out` if given)."""
    lead_i, lead_ii = independent[..., 0, :], independent[..., 1, :]
    if out is None:
        out = independent.new_empty((*independent.shape[:-2], 12, independent.shape[-1]))
    out[..., 0:2, :] = independent[..., 0:2, :]
    torch.sub(lead_ii, lead_i, out=out[..., 2, :])
    torch.add(lead_i, lead_ii, out=out[..., 3, :]).div_(-2)
    torch.sub(lead_i, lead_ii / 2, out=out[..., 4, :])
    torch.sub(lead_ii, lead_i / 2, out=out[..., 5, :])
    out[..., 6:, :] = independent[..., 2:, :]
    return out


def direction(frontal_deg: torch.Tensor, elevation_deg: torch.Tensor) -> torch.Tensor:
    """Unit dipole vectors [..., 3] from a frontal-plane angle (0 = left, +90 = inferior) and an
    elevation out of it (+ = anterior)."""
    f, e = torch.deg2rad(frontal_deg), torch.deg2rad(elevation_deg)
    return torch.stack([torch.cos(e) * torch.cos(f), torch.cos(e) * torch.sin(f), torch.sin(e)], dim=-1)


def rotate_frontal(vectors: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """Rotate dipole vectors [n, K, 3] in the frontal (x-y) plane by angle_deg [n]."""
    a = torch.deg2rad(angle_deg)[:, None]
    c, s = torch.cos(a), torch.sin(a)
    x, y, z = vectors.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], dim=-1)


@dataclass
class Waves:
    """Gaussian components of one beat type for n records, grouped into P, QRS and T waves.

    centre, width: [n, K] seconds from the anchor (width is the Gaussian sigma); dipole: [n, K, 3] in mV.
    The ST plateau (ST elevation/depression, bundle-branch secondary changes) is a smoothed box from
    st_start to st_end [n] s carrying st_dipole [n, 3]; it belongs to the repolarisation (T) wave.
    """

    p_centre: torch.Tensor
    p_width: torch.Tensor
    p_dipole: torch.Tensor
    qrs_centre: torch.Tensor
    qrs_width: torch.Tensor
    qrs_dipole: torch.Tensor
    t_centre: torch.Tensor
    t_width: torch.Tensor
    t_dipole: torch.Tensor
    st_start: torch.Tensor
    st_end: torch.Tensor
    st_dipole: torch.Tensor


def _gaussians(times: torch.Tensor, centre: torch.Tensor, width: torch.Tensor, dipole: torch.Tensor) -> torch.Tensor:
    """Sum of Gaussian bumps: times [W], centre/width [n, K], dipole [n, K, 3] -> [n, 3, W]."""
    z = (times[None, None, :] - centre[..., None]) / width[..., None]
    bumps = torch.exp(-0.5 * z * z)
    return torch.bmm(dipole.transpose(1, 2), bumps)


def _plateau(times: torch.Tensor, start: torch.Tensor, end: torch.Tensor, dipole: torch.Tensor) -> torch.Tensor:
    """Smoothed box from start to end (edges 8 ms and 40 ms), [n, 3, W]."""
    rise = torch.erf((times[None, :] - start[:, None]) / 0.008)
    fall = torch.erf((times[None, :] - end[:, None]) / 0.040)
    return 0.5 * (rise - fall)[:, None, :] * dipole[:, :, None]


@dataclass
class Template:
    """One beat type rendered on the template window, per wave, in dipole space ([n, 3, W] each)."""

    p: torch.Tensor
    qrs: torch.Tensor
    t: torch.Tensor       # T wave only (defines T onset and peak)
    st: torch.Tensor      # ST plateau (with T it defines T offset)

    def total(self) -> torch.Tensor:
        return self.p + self.qrs + self.t + self.st


def render_template(waves: Waves, times: torch.Tensor) -> Template:
    """Evaluate the waves of n records on the window times [W] (seconds from the anchor), in float32."""
    w = {k: v.float() for k, v in vars(waves).items()}
    times = times.float()
    return Template(
        p=_gaussians(times, w["p_centre"], w["p_width"], w["p_dipole"]),
        qrs=_gaussians(times, w["qrs_centre"], w["qrs_width"], w["qrs_dipole"]),
        t=_gaussians(times, w["t_centre"], w["t_width"], w["t_dipole"]),
        st=_plateau(times, w["st_start"], w["st_end"], w["st_dipole"]),
    )


def to_12_leads(dipole_signal: torch.Tensor, lead_matrix: torch.Tensor) -> torch.Tensor:
    """[n, 3, W] dipole signal -> [n, 12, W] leads."""
    return derive_12_leads(torch.matmul(lead_matrix.to(dipole_signal.dtype), dipole_signal))


# Fraction of a wave's largest 12-lead deflection that marks its onset/offset.
ONSET_THRESHOLD = {"P": 0.10, "QRS": 0.05, "T": 0.10}


def _extent(leads: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First/last sample above fraction * peak of the all-lead envelope, and whether the wave exists."""
    envelope = leads.amax(dim=1).maximum(-leads.amin(dim=1))  # [n, W] all-lead |deflection|
    peak = envelope.amax(dim=-1, keepdim=True)
    present = peak[:, 0] > 1e-4                              # a wave under 0.1 uV is absent
    above = envelope > fraction * peak
    onset = above.to(torch.int8).argmax(dim=-1)
    offset = above.shape[-1] - 1 - above.flip(-1).to(torch.int8).argmax(dim=-1)
    return onset, offset, present


def measure_fiducials(template: Template, lead_matrix: torch.Tensor) -> torch.Tensor:
    """Fiducial sample offsets in the template window, [n, 12 leads, 9 FIDUCIALS] int64, -1 where absent.

    Onsets and offsets are global (the same in every lead, as measured on the all-lead complex); peaks are
    per lead (largest absolute deflection of that wave in that lead).
    """
    p = to_12_leads(template.p, lead_matrix)
    qrs = to_12_leads(template.qrs, lead_matrix)
    t = to_12_leads(template.t, lead_matrix)
    repolarisation = t + to_12_leads(template.st, lead_matrix)
    n = p.shape[0]
    out = torch.full((n, len(LEADS_12), len(FIDUCIALS)), -1, dtype=torch.int64)
    # T offset: where repolarisation (ST plateau + T) returns to baseline
    for name, wave, ending in (("P", p, p), ("QRS", qrs, qrs), ("T", t, repolarisation)):
        onset, offset, present = _extent(wave, ONSET_THRESHOLD[name])
        if ending is not wave:
            _, offset, _ = _extent(ending, ONSET_THRESHOLD[name])
        peak = wave.abs().argmax(dim=-1)                       # [n, 12]
        base = FIDUCIALS.index(f"{name}_on")
        values = torch.stack([onset[:, None].expand(-1, 12), peak, offset[:, None].expand(-1, 12)], dim=-1)
        out[:, :, base:base + 3] = torch.where(present[:, None, None], values, torch.full_like(values, -1))
    return out


def global_qrs_peak(template: Template, lead_matrix: torch.Tensor) -> torch.Tensor:
    """Sample offset [n] of the largest all-lead QRS deflection (the beat's R peak)."""
    return to_12_leads(template.qrs, lead_matrix).abs().amax(dim=1).argmax(dim=-1)
