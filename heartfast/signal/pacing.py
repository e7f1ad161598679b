"""Pacemaker stimuli: found as brief pulses that most leads share, and bridged before delineation.

A pacing stimulus lasts a millisecond or two and shows in every lead at once. Low-passed for the QRS
(40 Hz) it becomes a ±10 ms blip that a delineator takes for the start of the QRS, and a large one
skews the QRS slope thresholds, while readers mark the paced complex from the ventricular response.
A stimulus stands off its neighbouring samples in most leads at once and is over within a few ms;
a tall narrow QRS stands off its neighbours too, but keeps rising over several samples, and noise
stands off in a few leads only (in LUDB, MIT-BIH 100 and the CinC 2021 records in ../shared/data the
stimuli of the paced records were found and no QRS apex; also a few saturation steps and glitches).
Such samples (or an equally brief artefact shared by the leads, which is as well bridged), widened by
PACE_WIDEN_S, are replaced by the straight line between their neighbours, and the spectrum the
delineator shares is corrected in place for the affected records only. Below PACE_MIN_RATE_HZ (QTDB's
250 Hz, PTB-XL's 100 Hz) a stimulus cannot be told from a QRS this way and nothing is done.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from heartfast.signal.rpeaks import Spectrum

PACE_MIN_RATE_HZ = 300.0  # below this a stimulus is smeared over samples and not told from the QRS
PACE_BEND_MV = 0.08       # a stimulus stands this far off the mean of its two neighbouring samples ...
PACE_SPAN_S = 0.006       # ... and less than PACE_GROWTH times as far off the mean of the samples this far away
PACE_GROWTH = 2.0         #     (a QRS apex stands k times as far off at k samples: it is no brief pulse)
PACE_LEAD_SHARE = 0.5     # ... in at least this share of the leads at once
PACE_WIDEN_S = 0.004      # its samples are bridged this far either side


def pacing_mask(x: torch.Tensor, fs: float) -> torch.Tensor | None:
    """[B, 1, T] bool: samples of x [B, L, T] inside a pacing stimulus; None below PACE_MIN_RATE_HZ."""
    if fs < PACE_MIN_RATE_HZ:
        return None
    t = x.shape[-1]
    k = max(2, int(round(PACE_SPAN_S * fs)))
    if t <= 2 * k:
        return torch.zeros(x.shape[0], 1, t, dtype=torch.bool, device=x.device)
    centre = x[..., k:t - k]
    near = torch.add(x[..., k - 1:t - k - 1], x[..., k + 1:t - k + 1]).mul_(0.5).sub_(centre).abs_()
    far = torch.add(x[..., :t - 2 * k], x[..., 2 * k:]).mul_(0.5).sub_(centre).abs_()
    brief = far.sub_(near, alpha=PACE_GROWTH).lt_(0)  # in place throughout: 1.0 where a lead shows a pulse
    hit = near.gt_(PACE_BEND_MV).mul_(brief).sum(1, keepdim=True) >= PACE_LEAD_SHARE * x.shape[1]
    r = max(1, int(round(PACE_WIDEN_S * fs)))
    return F.max_pool1d(F.pad(hit.float(), (k, k)), 2 * r + 1, stride=1, padding=r).bool()


def bridge(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, L, T] with the samples under mask [B, 1, T] replaced by the line between the nearest unmasked
    samples either side (the nearer one's value at a record edge)."""
    t = x.shape[-1]
    index = torch.arange(t, device=x.device).expand_as(mask)
    before = torch.where(mask, -1, index).cummax(-1).values
    after = torch.where(mask, t, index).flip(-1).cummin(-1).values.flip(-1)
    lo, hi = before.clamp(0, t - 1), after.clamp(0, t - 1)
    y_lo, y_hi = x.gather(-1, lo.expand_as(x)), x.gather(-1, hi.expand_as(x))
    frac = (index - lo).float() / (hi - lo).clamp_min(1).float()
    line = torch.where(before < 0, y_hi, torch.where(after >= t, y_lo, y_lo + frac * (y_hi - y_lo)))
    return torch.where(mask, line, x)


def remove_pacing_spikes(x: torch.Tensor, spectrum: Spectrum) -> torch.Tensor | None:
    """Make `spectrum` (taken of x [B, L, T]) that of x with its pacing stimuli bridged.

    Returns the stimulus mask [B, 1, T] (None below PACE_MIN_RATE_HZ). Only the records with a
    stimulus are bridged and transformed again.
    """
    mask = pacing_mask(x, spectrum.fs)
    if mask is None:
        return None
    paced = mask.flatten(1).any(1).nonzero()[:, 0]
    if paced.numel():
        n_leads, t = x.shape[1:]
        change = bridge(x[paced], mask[paced]) - x[paced]
        rows = (paced[:, None] * n_leads + torch.arange(n_leads, device=x.device)).reshape(-1)
        spectrum.add(change.reshape(-1, t), rows)
    return mask
