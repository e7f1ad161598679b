"""Batched multi-lead R-peak detection in torch (CPU or GPU).

Signals [B, L, T] are band-passed to the QRS band at ~125 Hz, differentiated and squared; the per-lead
energies, each scaled by the lead's RMS slope so that no single large lead dominates, are summed over
leads and integrated over ~100 ms. Beats are local maxima of that envelope over a refractory window that
exceed a per-record adaptive threshold. Everything is tensor ops over the whole batch: no loop over
samples, leads or records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

QRS_BAND_HZ = (5.0, 18.0)
INTEGRATION_S = 0.10
REFRACTORY_S = 0.25
THRESHOLD_FRACTION = 0.3   # of the record's typical (median) beat-energy peak
DETECTION_RATE_HZ = 125.0
ANCHOR_SEARCH_S = 0.08     # the beat anchor is the sharpest point within this distance of the envelope peak


def _gain(freqs: torch.Tensor, low_hz: float | None, high_hz: float | None) -> torch.Tensor:
    """Smooth band-pass gain: cosine ramps from 0 at low/2 to 1 at low, and from 1 at high to 0 at 1.5 high."""
    gain = torch.ones_like(freqs)
    if low_hz is not None:
        ramp = ((freqs - low_hz / 2) / (low_hz / 2)).clamp(0, 1)
        gain = gain * (0.5 - 0.5 * torch.cos(torch.pi * ramp))
    if high_hz is not None:
        ramp = ((freqs - high_hz) / (high_hz / 2)).clamp(0, 1)
        gain = gain * (0.5 + 0.5 * torch.cos(torch.pi * ramp))
    return gain


def _fft_size(n: int, step: int) -> int:
    """Smallest length >= n divisible by `step` with no prime factor above 5 (fast FFT sizes)."""
    size = n + (-n) % step
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += step


class Spectrum:
    """One FFT of a reflect-padded [..., T] signal, from which band-passed copies are taken at lower rates.

    `band(low, high, factor)` filters in the frequency domain and resamples to fs / factor at once by
    inverse-transforming only the bins below the new Nyquist frequency (exact for a band-limited result),
    so the delineator works at 250 Hz (QRS) and 125 Hz (P, T, beat detection) whatever the input rate.
    """

    def __init__(self, x: torch.Tensor, fs: float, factors: tuple[int, ...], pad_s: float = 0.5) -> None:
        step = math.lcm(*factors)
        t = x.shape[-1]
        self.pad = (min(int(pad_s * fs), t - 1) // step) * step
        self.tail = _fft_size(t + 2 * self.pad, step) - (t + 2 * self.pad)  # every factor divides it; FFT-friendly
        self.shape, self.fs, self.length = x.shape, fs, t + 2 * self.pad + self.tail
        self.spectrum = self._transform(x.reshape(-1, t))
        self.freqs = torch.fft.rfftfreq(self.length, d=1.0 / fs, device=x.device, dtype=x.dtype)

    def _transform(self, rows: torch.Tensor) -> torch.Tensor:
        """rfft of rows [R, T], padded like every row of this spectrum."""
        pad, tail, t = self.pad, self.tail, rows.shape[-1]
        flat = rows[:, None]
        right = pad + tail
        if right >= t:  # a short record: reflect what there is, repeat its last sample for the rest
            flat = F.pad(F.pad(flat, (pad, pad), mode="reflect") if pad else flat, (0, tail), mode="replicate")
        elif right > 0:  # reflect padding by slicing (faster than F.pad's reflect on CPU)
            flat = torch.cat([flat[..., 1:pad + 1].flip(-1), flat, flat[..., t - right - 1:t - 1].flip(-1)], -1)
        return torch.fft.rfft(flat[:, 0], dim=-1)

    def add(self, change: torch.Tensor, rows: torch.Tensor) -> None:
        """Make this the spectrum of x + change, where change [R, T] is nonzero only in the given rows of
        x.reshape(-1, T) (the padding and the transform are linear, so only those rows are transformed)."""
        if rows.numel():
            self.spectrum[rows] += self._transform(change)

    def band(self, low_hz: float | None, high_hz: float | None, factor: int = 1) -> torch.Tensor:
        """[..., ceil(T / factor)] band-passed signal at fs / factor."""
        n = self.length // factor
        bins = n // 2 + 1
        spec = self.spectrum[:, :bins] * _gain(self.freqs[:bins], low_hz, high_hz)
        out = torch.fft.irfft(spec, n=n, dim=-1) / factor
        start = self.pad // factor
        keep = -(-self.shape[-1] // factor)
        return out[:, start:start + keep].reshape(*self.shape[:-1], keep)


def rate_factor(fs: float, rate: float) -> int:
    """Integer decimation factor that brings fs closest to (not below half of) the working rate."""
    return max(1, int(round(fs / rate)))


def spectral_filter(x: torch.Tensor, fs: float, low_hz: float | None, high_hz: float | None) -> torch.Tensor:
    """Zero-phase band-pass of [..., T] at the same rate (see Spectrum)."""
    return Spectrum(x, fs, (1,)).band(low_hz, high_hz)


@dataclass
class RPeaks:
    """Beat anchors (sample indices) per record, padded: `index` [B, K] (0 where absent), `mask` [B, K]."""

    index: torch.Tensor
    mask: torch.Tensor

    def counts(self) -> torch.Tensor:
        return self.mask.sum(-1)

    def as_lists(self) -> list[list[int]]:
        return [row[m].tolist() for row, m in zip(self.index.cpu(), self.mask.cpu())]


def qrs_energy(band: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-lead QRS energy of QRS-band signals [B, L, T] at `rate`: (sharp [B, T], envelope [B, T]).

    `sharp` is the squared slope summed over leads, each lead scaled by its RMS slope;
    `envelope` is `sharp` averaged over ~100 ms (centred, so it is not delayed).
    """
    slope = torch.zeros_like(band)
    slope[..., 1:-1] = (band[..., 2:] - band[..., :-2]) * 0.5
    scale = slope.square().mean(-1, keepdim=True).sqrt()
    weight = torch.where(scale > 1e-6, 1.0 / scale.clamp_min(1e-6), torch.zeros_like(scale))
    sharp = ((slope * weight) ** 2).sum(dim=1)
    width = max(1, int(round(INTEGRATION_S * rate)) | 1)
    envelope = F.avg_pool1d(sharp[:, None], width, stride=1, padding=width // 2, count_include_pad=False)[:, 0]
    return sharp, envelope


def _local_maxima(v: torch.Tensor, half_width: int) -> torch.Tensor:
    """[B, T] bool: v[t] is the (first) maximum of v within ±half_width samples."""
    t = v.shape[-1]
    tie_break = torch.arange(t, device=v.device, dtype=v.dtype) * (-1e-7) * v.abs().amax(-1, keepdim=True)
    w = v + tie_break  # earlier sample wins a plateau
    pooled = F.max_pool1d(w[:, None], 2 * half_width + 1, stride=1, padding=half_width)[:, 0]
    return w >= pooled


def _pad_positions(hit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] bool -> (index [B, K] sorted, mask [B, K]) with K the largest count in the batch."""
    counts = hit.sum(-1)
    k = int(counts.max().item()) if hit.numel() else 0
    b, t = hit.shape
    positions = torch.arange(t, device=hit.device).expand(b, t)
    keyed = torch.where(hit, positions, torch.full_like(positions, t))
    index = keyed.sort(dim=-1).values[:, :k]
    mask = index < t
    return torch.where(mask, index, torch.zeros_like(index)), mask


def detect_rpeaks(signals: torch.Tensor, fs: float, spectrum: Spectrum | None = None) -> RPeaks:
    """R-peak (beat anchor) positions of every record in signals [B, L, T] (mV) sampled at fs Hz.

    Works at ~125 Hz. Returns one anchor per beat shared by all leads (in samples at fs): the point of
    largest multi-lead slope energy near the envelope maximum. Per-lead R peaks are found later by the
    delineator inside each QRS. `spectrum` lets the delineator share its FFT.
    """
    if signals.dim() != 3:
        raise ValueError(f"signals must be [B, L, T], got {tuple(signals.shape)}")
    factor = rate_factor(fs, DETECTION_RATE_HZ)
    if spectrum is None:
        spectrum = Spectrum(torch.nan_to_num(signals.float()), fs, (factor,))
    rate = fs / factor
    sharp, envelope = qrs_energy(spectrum.band(*QRS_BAND_HZ, factor=factor), rate)
    candidates = _local_maxima(envelope, max(1, int(REFRACTORY_S * rate)))
    heights = torch.where(candidates, envelope, torch.full_like(envelope, float("nan")))
    # typical beat height: the upper quartile of the candidate peaks (robust to noise bumps and to a
    # few large artefacts); a fraction of it is the threshold.
    top = heights.nanquantile(0.75, dim=-1, keepdim=True) if heights.shape[-1] < 2 ** 24 else \
        envelope.amax(-1, keepdim=True) * 0.5
    threshold = THRESHOLD_FRACTION * torch.nan_to_num(top, nan=float("inf"))
    edge = int(0.05 * rate)
    inside = torch.zeros_like(candidates)
    inside[:, edge:envelope.shape[-1] - edge] = True
    beats = candidates & (envelope > threshold) & (envelope > 0) & inside
    index, mask = _pad_positions(beats)
    if index.shape[1] == 0:
        return RPeaks(index, mask)
    # snap each envelope peak to the sharpest sample nearby (the envelope is a smoothed version)
    radius = max(1, int(ANCHOR_SEARCH_S * rate))
    offsets = torch.arange(-radius, radius + 1, device=signals.device)
    around = (index[..., None] + offsets).clamp(0, sharp.shape[-1] - 1)
    local = sharp.gather(1, around.reshape(index.shape[0], -1)).reshape(around.shape)
    anchor = around.gather(-1, local.argmax(-1, keepdim=True))[..., 0] * factor
    anchor = anchor.clamp_max(signals.shape[-1] - 1)
    return RPeaks(torch.where(mask, anchor, torch.zeros_like(anchor)), mask)
