"""Signal quality and the Beat tokenizer's input rule, batched in torch.

Quality of one lead in one window (0 = unusable, 1 = clean), from three spectral/statistical indices of
the cleaned signal, multiplied by a validity gate:
- kurtosis: a clean ECG is a peaky (QRS) signal, kurtosis well above Gaussian noise's 3;
- QRS power ratio: power in 5-15 Hz over 5-40 Hz, about 0.5-0.8 for a clean ECG, low under muscle noise;
- high-frequency share: power above 40 Hz over the total, near 0 for a clean ECG;
- gate: 0 for a window with NaNs, a flat line (peak-to-peak under 20 uV) or saturation (2 % or more of
  the samples sitting at the window's extreme value, the signature of a clipped amplifier).

The Beat rule (see REFERENCE.md): resample to 250 Hz, clean each lead (0.5 Hz high-pass and a powerline
notch), keep the 6 s window of highest mean lead quality (first 4 s = 1000 samples input, last 2 s = 500
target), subtract each lead's mean and divide by one standard deviation over all leads (both taken over
the input part).
"""
from __future__ import annotations

import torch

from heartfast.signal.filters import highpass, notch, powerline_frequency, resample

BEAT_FS = 250.0
BEAT_INPUT = 1000
BEAT_TARGET = 500
_FLAT_MV = 0.02
_SATURATED_SHARE = 0.02


def clean(x: torch.Tensor, fs: float, powerline: float | None = None) -> torch.Tensor:
    """High-pass 0.5 Hz and notch the mains frequency (50/60 Hz; None: per signal, whichever is stronger)."""
    x = highpass(x, fs)
    if powerline is not None:
        return notch(x, fs, powerline) if powerline < fs / 2 else x
    candidates = [f for f in (50.0, 60.0) if f < fs / 2]
    if not candidates:
        return x
    if len(candidates) == 1:
        return notch(x, fs, candidates[0])
    sixty = powerline_frequency(x, fs)[..., None] == 60.0
    return torch.where(sixty, notch(x, fs, 60.0), notch(x, fs, 50.0))


def _band_power(power: torch.Tensor, freqs: torch.Tensor, low: float, high: float) -> torch.Tensor:
    band = (freqs >= low) & (freqs < high)
    return (power * band).sum(-1)


def signal_quality(x: torch.Tensor, fs: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Quality in [0, 1] of each cleaned signal [..., T] -> [...]. `valid` [...] bool gates extra causes
    (e.g. NaNs found before cleaning)."""
    centred = x - x.mean(-1, keepdim=True)
    variance = centred.pow(2).mean(-1)
    kurtosis = centred.pow(4).mean(-1) / variance.pow(2).clamp(min=1e-12)
    peaky = ((kurtosis - 3.0) / 5.0).clamp(0, 1)

    power = torch.fft.rfft(centred, dim=-1).abs().pow(2)
    freqs = torch.fft.rfftfreq(x.shape[-1], d=1.0 / fs).to(x.device)
    qrs_ratio = _band_power(power, freqs, 5, 15) / _band_power(power, freqs, 5, 40).clamp(min=1e-12)
    qrs_like = (1 - (qrs_ratio - 0.65).abs() / 0.35).clamp(0, 1)
    high_share = _band_power(power, freqs, 40, fs) / power.sum(-1).clamp(min=1e-12)
    smooth = (1 - 2 * high_share).clamp(0, 1)

    peak, trough = x.amax(-1), x.amin(-1)
    flat = (peak - trough) < _FLAT_MV
    tolerance = 1e-6 * (peak - trough)[..., None]
    at_rail = ((x >= (peak[..., None] - tolerance)) | (x <= (trough[..., None] + tolerance))).float().mean(-1)
    gate = ~flat & (at_rail < _SATURATED_SHARE) & torch.isfinite(kurtosis)
    if valid is not None:
        gate &= valid
    return torch.where(gate, (peaky + qrs_like + smooth) / 3, torch.zeros_like(peaky))


def window_starts(n_samples: int, length: int, hop: int) -> torch.Tensor:
    """Start samples of windows of `length` every `hop`, plus the right-aligned last one."""
    if n_samples < length:
        raise ValueError(f"signal of {n_samples} samples is shorter than a window of {length}")
    starts = list(range(0, n_samples - length + 1, hop))
    if starts[-1] != n_samples - length:
        starts.append(n_samples - length)
    return torch.tensor(starts, dtype=torch.long)


def window_quality(x: torch.Tensor, fs: float, length: int, starts: torch.Tensor,
                   finite: torch.Tensor | None = None) -> torch.Tensor:
    """Mean quality over the present leads of cleaned [B, L, T] in each window -> [B, n_windows].

    A lead that is zero over the whole record (a missing lead, zero-padded) is left out of the mean;
    `finite` [B, L, T] bool marks samples that were not NaN before cleaning.
    """
    offsets = starts.to(x.device)[:, None] + torch.arange(length, device=x.device)[None, :]
    windows = x[..., offsets]                                            # [B, L, W, length]
    valid = None if finite is None else finite[..., offsets].all(-1)
    quality = signal_quality(windows, fs, valid)                         # [B, L, W]
    present = (x != 0).any(-1, keepdim=True)                             # [B, L, 1]
    count = present.sum(1).clamp(min=1)
    return (quality * present).sum(1) / count


def beat_normalize(inputs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract each lead's mean and divide by one std over all leads, both from the input part."""
    mean = inputs.mean(-1, keepdim=True)
    std = (inputs - mean).flatten(-2).std(-1)[..., None, None].clamp(min=eps)
    return (inputs - mean) / std, (targets - mean) / std


def best_windows(x: torch.Tensor, fs: float, length: int, hop: int, finite: torch.Tensor | None = None) -> torch.Tensor:
    """Cut the highest-quality window of `length` samples out of cleaned [B, L, T] -> [B, L, length]."""
    starts = window_starts(x.shape[-1], length, hop)
    best = window_quality(x, fs, length, starts, finite).argmax(-1)      # [B]
    index = starts.to(x.device)[best][:, None] + torch.arange(length, device=x.device)[None, :]
    return torch.gather(x, -1, index[:, None, :].expand(-1, x.shape[1], -1))


def _finite_after_resample(finite: torch.Tensor, fs: float, n_out: int) -> torch.Tensor:
    """Map a finite-sample mask [..., T] at fs to n_out samples at 250 Hz: an output sample is finite when
    every input sample in its interval is."""
    bad = torch.nn.functional.pad((~finite).long().cumsum(-1), (1, 0))
    ratio = fs / BEAT_FS
    i = torch.arange(n_out, device=finite.device, dtype=torch.float64)
    low = torch.floor(i * ratio).long().clamp(max=finite.shape[-1])
    high = torch.ceil((i + 1) * ratio).long().clamp(max=finite.shape[-1])
    return (bad[..., high] - bad[..., low]) == 0


def beat_windows(signals: torch.Tensor, fs: float, hop_s: float = 0.5,
                 powerline: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The Beat rule on [B, 12, T] at fs: (inputs [B, 12, 1000], targets [B, 12, 500]) at 250 Hz, cleaned,
    best 6 s window, normalised. Records shorter than 6 s are zero-padded on the left; NaNs count as
    bad samples (their windows score 0) and are zeroed."""
    if signals.dim() != 3:
        raise ValueError(f"beat_windows expects [batch, leads, samples], got shape {tuple(signals.shape)}")
    finite = torch.isfinite(signals)
    x = torch.where(finite, signals, torch.zeros_like(signals))
    if fs != BEAT_FS:
        x = resample(x, fs, BEAT_FS)
        finite = _finite_after_resample(finite, fs, x.shape[-1])
    x = clean(x, BEAT_FS, powerline)
    length = BEAT_INPUT + BEAT_TARGET
    if x.shape[-1] < length:
        pad = length - x.shape[-1]
        x = torch.nn.functional.pad(x, (pad, 0))
        finite = torch.nn.functional.pad(finite, (pad, 0), value=True)
    window = best_windows(x, BEAT_FS, length, int(round(hop_s * BEAT_FS)), finite)
    return beat_normalize(window[..., :BEAT_INPUT], window[..., BEAT_INPUT:])
