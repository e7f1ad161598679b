"""Beat timing, beat-train rendering and recording noise of the synthetic ECG (all batched).

Beat times come from RR series drawn for every record at once (sinus: small Gaussian variability plus
respiratory sinus arrhythmia; atrial fibrillation: uniformly irregular RR; PVCs: premature beats with a
compensatory pause in sinus rhythm). A record's dipole signal is its beat templates convolved with impulse
trains (one per beat type, weighted by a respiratory amplitude modulation), done by one batched FFT: no
loop over records or beats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch



@dataclass
class BeatTrain:
    """Beats of n records, padded to M: times [n, M] s, sample anchors [n, M], beat type (0 normal, 1 PVC),
    amplitude scale, and `touches` (the beat's template window overlaps the record)."""

    times: torch.Tensor
    anchors: torch.Tensor
    is_pvc: torch.Tensor
    scale: torch.Tensor
    touches: torch.Tensor

    def rows(self, rows: slice) -> BeatTrain:
        return BeatTrain(*(getattr(self, name)[rows] for name in ("times", "anchors", "is_pvc", "scale", "touches")))


def _uniform(gen: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def draw_beats(
    gen: torch.Generator, rr_mean: torch.Tensor, irregular: torch.Tensor, pvc_rate: torch.Tensor,
    duration_s: float, fs: float, pre: int, post: int,
) -> BeatTrain:
    """Draw beat times for n records: rr_mean [n] s, irregular [n] bool (AF), pvc_rate [n] (0 = no PVCs)."""
    n = rr_mean.shape[0]
    window_s = duration_s + (pre + post) / fs
    m = int(math.ceil(window_s / (0.5 * float(rr_mean.min()))) + 3)
    k = torch.arange(m, dtype=torch.float64)[None, :]
    variability = _uniform(gen, (n, 1), 0.01, 0.035)
    resp_period = _uniform(gen, (n, 1), 3.0, 6.0)
    resp_phase = _uniform(gen, (n, 1), 0.0, 2 * math.pi)
    resp_depth = _uniform(gen, (n, 1), 0.0, 0.04)
    approx_t = k * rr_mean[:, None]
    sinus = 1 + variability * torch.randn((n, m), generator=gen, dtype=torch.float64) \
        + resp_depth * torch.sin(2 * math.pi * approx_t / resp_period + resp_phase)
    fibrillation = _uniform(gen, (n, m), 0.6, 1.4)
    factor = torch.where(irregular[:, None], fibrillation, sinus)

    # PVCs: beat k >= 1 is premature (coupling 55-70 % of the RR); no two in a row; one forced mid-record.
    start = -_uniform(gen, (n,), 0.0, 1.0) * rr_mean
    draw = torch.rand((n, m), generator=gen, dtype=torch.float64) < pvc_rate[:, None]
    middle = ((duration_s / 2 - start) / rr_mean).round().long().clamp(1, m - 2)
    draw[torch.arange(n), middle] |= pvc_rate > 0
    draw[:, 0] = False
    is_pvc = draw & ~torch.cat([torch.zeros((n, 1), dtype=torch.bool), draw[:, :-1]], dim=1)
    coupling = _uniform(gen, (n, m), 0.55, 0.7)
    # rr[:, j] is the interval from beat j to beat j + 1
    into_pvc = torch.cat([is_pvc[:, 1:], torch.zeros((n, 1), dtype=torch.bool)], dim=1)
    rr = factor * rr_mean[:, None]
    pause = torch.where(irregular[:, None], rr, (2 - coupling) * rr)   # compensatory pause in sinus rhythm
    rr_shortened = torch.where(into_pvc, coupling * rr, rr)
    rr_final = torch.where(is_pvc, pause, rr_shortened)
    times = start[:, None] + torch.cat([torch.zeros((n, 1), dtype=torch.float64), rr_final.cumsum(1)[:, :-1]], 1)

    anchors = torch.round(times * fs).long()
    n_samples = int(round(duration_s * fs))
    touches = (anchors >= -post) & (anchors < n_samples + pre)
    scale = 1 + 0.04 * torch.sin(2 * math.pi * times / resp_period + 2 * resp_phase)
    return BeatTrain(times=times, anchors=anchors, is_pvc=is_pvc, scale=scale, touches=touches)


def fast_fft_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n."""
    best = 1 << max(0, (n - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            p = three
            while p < n:
                p *= 2
            best = min(best, p)
            three *= 3
        five *= 5
    return best


def render_beats(normal: torch.Tensor, pvc: torch.Tensor, beats: BeatTrain, n_samples: int, pre: int,
                 post: int) -> torch.Tensor:
    """Place the normal and PVC beat templates [n, C, W] at the beats' anchors: [n, C, n_samples].

    Computed as (template ⊛ impulse train) per record and beat type with batched real FFTs; the PVC
    template is convolved only for records that have a PVC.
    """
    n, channels, width = normal.shape
    train_len = n_samples + pre + post
    trains = torch.zeros((n, 2, train_len), dtype=normal.dtype)
    kind = beats.is_pvc.long()
    index = (beats.anchors + post).clamp(0, train_len - 1)
    weight = torch.where(beats.touches, beats.scale, torch.zeros_like(beats.scale)).to(normal.dtype)
    trains.view(n, 2 * train_len).scatter_add_(1, kind * train_len + index, weight)
    length = fast_fft_length(train_len + width - 1)
    spectrum = torch.fft.rfft(trains[:, 0], n=length)[:, None, :] * torch.fft.rfft(normal, n=length)
    with_pvc = (beats.is_pvc & beats.touches).any(1).nonzero()[:, 0]
    if len(with_pvc):
        spectrum[with_pvc] += torch.fft.rfft(trains[with_pvc, 1], n=length)[:, None, :] \
            * torch.fft.rfft(pvc[with_pvc], n=length)
    return torch.fft.irfft(spectrum, n=length)[..., pre + post: pre + post + n_samples]


def fibrillatory_waves(gen: torch.Generator, n: int, n_samples: int, fs: float) -> torch.Tensor:
    """Atrial fibrillation f-waves in dipole space [n, 3, T]: 4-8 Hz, wandering phase, 0.03-0.1 mV,
    directed right-anterior-inferior (most visible in V1 and the inferior leads)."""
    t = torch.arange(n_samples, dtype=torch.float64)[None, :] / fs
    freq = _uniform(gen, (n, 1), 4.0, 8.0)
    amplitude = _uniform(gen, (n, 1), 0.03, 0.1)
    phases = _uniform(gen, (n, 3), 0.0, 2 * math.pi)
    drift = 0.8 * torch.sin(2 * math.pi * _uniform(gen, (n, 1), 0.1, 0.4) * t + phases[:, 1:2])
    wave = torch.sin(2 * math.pi * freq * t + phases[:, :1] + drift) \
        + 0.4 * torch.sin(2 * math.pi * 1.9 * freq * t + phases[:, 2:3])
    axis = torch.tensor([-0.35, 0.55, 0.75], dtype=torch.float64)
    return (amplitude * wave)[:, None, :] * (axis / axis.norm())[None, :, None]


@dataclass
class NoiseLevels:
    """Per-record noise: baseline wander amplitude (mV), muscle noise std (mV), powerline amplitude (mV)
    and frequency (Hz)."""

    baseline_mv: torch.Tensor
    muscle_mv: torch.Tensor
    powerline_mv: torch.Tensor
    powerline_hz: torch.Tensor

    def rows(self, rows: slice) -> NoiseLevels:
        return NoiseLevels(self.baseline_mv[rows], self.muscle_mv[rows], self.powerline_mv[rows], self.powerline_hz[rows])


def draw_noise_levels(gen: torch.Generator, n: int, level: float) -> NoiseLevels:
    return NoiseLevels(
        baseline_mv=level * _uniform(gen, (n,), 0.0, 0.2),
        muscle_mv=level * _uniform(gen, (n,), 0.0, 0.03),
        powerline_mv=level * _uniform(gen, (n,), 0.0, 0.03),
        powerline_hz=torch.where(torch.rand(n, generator=gen) < 0.5, 50.0, 60.0).double(),
    )


def electrode_noise(gen: torch.Generator, levels: NoiseLevels, leads: int, n_samples: int, fs: float) -> torch.Tensor:
    """Noise on the independent leads [n, leads, T] float32: baseline wander (two sines per record,
    0.05-0.5 Hz, mixed into each lead with its own amplitude and phase), white muscle noise and powerline
    hum with a per-lead phase. The sines are a per-record basis [n, 6, T] mixed by one batched matmul."""
    n = levels.baseline_mv.shape[0]
    t = torch.arange(n_samples, dtype=torch.float32)[None, None, :] / fs
    freqs = torch.cat([_uniform(gen, (n, 2), 0.05, 0.5), levels.powerline_hz[:, None]], 1)[..., None]
    phase = (2 * math.pi * freqs.float()) * t                                      # [n, 3, T]; float32 is ample for noise
    basis = torch.cat([torch.sin(phase), torch.cos(phase)], 1)                     # sin, sin, sin, cos, cos, cos
    amp = torch.cat([_uniform(gen, (n, leads, 2), 0.3, 1.0) * levels.baseline_mv[:, None, None],
                     levels.powerline_mv[:, None, None].expand(n, leads, 1)], 2)   # [n, leads, 3]
    lead_phase = _uniform(gen, (n, leads, 3), 0.0, 2 * math.pi)
    # a sin(wt + p) = a cos(p) sin(wt) + a sin(p) cos(wt)
    mix = torch.cat([amp * torch.cos(lead_phase), amp * torch.sin(lead_phase)], 2).float()
    muscle = torch.randn((n, leads, n_samples), generator=gen, dtype=torch.float32)
    return torch.baddbmm(muscle * levels.muscle_mv.float()[:, None, None], mix, basis)
