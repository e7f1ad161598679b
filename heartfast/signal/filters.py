"""Batched torch filters for [..., T] signals on any device: polyphase resampling and zero-phase IIR
filters (baseline-wander high-pass, powerline notch, low-pass) that agree with scipy.signal.

Resampling reproduces `scipy.signal.resample_poly(x, up, down)` (Kaiser-windowed FIR, beta 5, 10 zero
crossings per side, zero padding): the FIR is split into its `up` polyphase branches and applied by a single
strided `conv1d` whose output channels are the branches, then interleaved.

Zero-phase IIR filtering reproduces `scipy.signal.sosfiltfilt` / `filtfilt` (odd extension of 3 * ntaps
samples, steady-state initial conditions, forward then backward pass). A recursion over time would be a
sequential loop, so each pass is instead a convolution by FFT with the filter's impulse response, computed
once in float64 and truncated where it has decayed below 1e-10 of its peak. The steady-state initial
condition is the response to the first sample held constant since -inf, which adds x0 * (H(1) - cumsum(h))
to the output, so no extra padding is needed.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.signal
import torch

_DECAY = 1e-10


def _rate_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    ratio = (Fraction(str(float(fs_out))) / Fraction(str(float(fs_in)))).limit_denominator(10_000)
    return ratio.numerator, ratio.denominator


@lru_cache(maxsize=64)
def _polyphase_bank(up: int, down: int) -> tuple[np.ndarray, int, int]:
    """Polyphase branches of resample_poly's default FIR as conv1d weights [up, 1, F] (float64), the input
    offset of branch 0's first tap, and F. Output up*m + p = sum_t x[offset + down*m + t] * bank[p, t]."""
    half_len = 10 * max(up, down)
    taps = scipy.signal.firwin(2 * half_len + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up
    n_per_branch = -(-taps.size // up)
    padded = np.zeros(n_per_branch * up)
    padded[:taps.size] = taps
    first = np.array([(p * down + half_len) // up for p in range(up)])   # newest input sample of branch p
    phase = np.array([(p * down + half_len) % up for p in range(up)])
    shift = first - first.min()
    length = n_per_branch + int(shift.max())
    bank = np.zeros((up, 1, length))
    for p in range(up):
        k = np.arange(n_per_branch)
        bank[p, 0, shift[p] + n_per_branch - 1 - k] = padded[phase[p] + k * up]
    return bank, int(first.min()) - (n_per_branch - 1), length


@lru_cache(maxsize=64)
def _bank_tensor(up: int, down: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(_polyphase_bank(up, down)[0], dtype=dtype, device=device)


def resample(x: torch.Tensor, fs_in: float, fs_out: float) -> torch.Tensor:
    """Resample [..., T] from fs_in to fs_out (rational ratio) like scipy.signal.resample_poly."""
    up, down = _rate_ratio(fs_in, fs_out)
    if up == down:
        return x.clone()
    if not x.is_floating_point():
        raise TypeError(f"resample needs a floating-point tensor, got {x.dtype}")
    n_in = x.shape[-1]
    n_out = -(-n_in * up // down)
    _, offset, length = _polyphase_bank(up, down)
    rows = -(-n_out // up)
    needed = (rows - 1) * down + length
    left = -offset
    right = max(0, needed - (n_in + left))
    flat = torch.nn.functional.pad(x.reshape(-1, 1, n_in), (left, right))
    branches = torch.nn.functional.conv1d(flat, _bank_tensor(up, down, x.dtype, x.device), stride=down)
    out = branches[..., :rows].transpose(1, 2).reshape(-1, rows * up)[:, :n_out]
    return out.reshape(*x.shape[:-1], n_out)


class ZeroPhaseFilter:
    """A zero-phase IIR filter (second-order sections) applied like scipy's sosfiltfilt, by FFT convolution.

    The impulse response h, its tail H(1) - cumsum(h) and the pad length are computed once in float64.
    """

    def __init__(self, sos: np.ndarray, description: str) -> None:
        self.sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
        self.description = description
        ntaps = 2 * len(self.sos) + 1 - min(int((self.sos[:, 2] == 0).sum()), int((self.sos[:, 5] == 0).sum()))
        self.padlen = 3 * ntaps
        self.impulse = self._impulse_response()
        dc_gain = float(np.prod(self.sos[:, :3].sum(1) / self.sos[:, 3:].sum(1)))
        self.tail = dc_gain - np.cumsum(self.impulse)
        self._spectra: dict[tuple, torch.Tensor] = {}

    def _impulse_response(self) -> np.ndarray:
        n = 4096
        while True:
            impulse = np.zeros(n)
            impulse[0] = 1.0
            h = scipy.signal.sosfilt(self.sos, impulse)
            significant = np.flatnonzero(np.abs(h) > _DECAY * np.abs(h).max())
            if significant[-1] < n // 2:
                return h[:significant[-1] + 1]
            if n >= 1 << 22:
                raise ValueError(f"{self.description}: impulse response does not decay (unstable filter?)")
            n *= 4

    def _spectrum(self, nfft: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (nfft, dtype, device)
        if key not in self._spectra:
            h = torch.as_tensor(self.impulse, dtype=torch.float64, device=device)
            self._spectra[key] = torch.fft.rfft(h, n=nfft).to(torch.complex64 if dtype != torch.float64 else torch.complex128)
        return self._spectra[key]

    def _steady_state_pass(self, e: torch.Tensor) -> torch.Tensor:
        """One causal pass over [N, L] starting in steady state for its first sample."""
        length = e.shape[-1]
        nfft = fast_fft_length(length + self.impulse.size - 1)
        y = torch.fft.irfft(torch.fft.rfft(e, n=nfft) * self._spectrum(nfft, e.dtype, e.device), n=nfft)[..., :length]
        tail = np.zeros(length)
        m = min(length, self.tail.size)
        tail[:m] = self.tail[:m]
        tail[m:] = self.tail[-1]
        return y + e[..., :1] * torch.as_tensor(tail, dtype=e.dtype, device=e.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Filter [..., T] forward and backward (zero phase), odd-extended at both ends like scipy."""
        if not x.is_floating_point():
            raise TypeError(f"{self.description}: needs a floating-point tensor, got {x.dtype}")
        n = x.shape[-1]
        edge = self.padlen
        if n <= edge:
            raise ValueError(f"{self.description}: signal of {n} samples is too short (needs > {edge})")
        flat = x.reshape(-1, n)
        first, last = flat[:, :1], flat[:, -1:]
        ext = torch.cat([2 * first - flat[:, 1:edge + 1].flip(-1), flat, 2 * last - flat[:, -edge - 1:-1].flip(-1)], -1)
        forward = self._steady_state_pass(ext)
        backward = self._steady_state_pass(forward.flip(-1)).flip(-1)
        return backward[:, edge:edge + n].reshape(x.shape)


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


def _check_frequency(name: str, value: float, fs: float) -> None:
    if not 0 < value < fs / 2:
        raise ValueError(f"{name}={value} Hz must lie between 0 and Nyquist ({fs / 2} Hz) at fs={fs}")


@lru_cache(maxsize=64)
def highpass_filter(fs: float, cutoff: float = 0.5, order: int = 2) -> ZeroPhaseFilter:
    """Butterworth high-pass (baseline wander), as scipy.signal.butter(order, cutoff, 'highpass', fs, 'sos')."""
    _check_frequency("cutoff", cutoff, fs)
    sos = scipy.signal.butter(order, cutoff, btype="highpass", fs=fs, output="sos")
    return ZeroPhaseFilter(sos, f"high-pass {cutoff} Hz at {fs} Hz")


@lru_cache(maxsize=64)
def lowpass_filter(fs: float, cutoff: float, order: int = 4) -> ZeroPhaseFilter:
    """Butterworth low-pass, as scipy.signal.butter(order, cutoff, 'lowpass', fs, 'sos')."""
    _check_frequency("cutoff", cutoff, fs)
    sos = scipy.signal.butter(order, cutoff, btype="lowpass", fs=fs, output="sos")
    return ZeroPhaseFilter(sos, f"low-pass {cutoff} Hz at {fs} Hz")


@lru_cache(maxsize=64)
def notch_filter(fs: float, freq: float = 50.0, q: float = 30.0) -> ZeroPhaseFilter:
    """Second-order IIR notch, as scipy.signal.iirnotch(freq, q, fs) (one section)."""
    _check_frequency("freq", freq, fs)
    b, a = scipy.signal.iirnotch(freq, q, fs=fs)
    return ZeroPhaseFilter(np.concatenate([b, a])[None, :], f"notch {freq} Hz (Q {q}) at {fs} Hz")


def highpass(x: torch.Tensor, fs: float, cutoff: float = 0.5, order: int = 2) -> torch.Tensor:
    """Remove baseline wander from [..., T]: zero-phase Butterworth high-pass (= scipy sosfiltfilt)."""
    return highpass_filter(float(fs), float(cutoff), int(order))(x)


def lowpass(x: torch.Tensor, fs: float, cutoff: float, order: int = 4) -> torch.Tensor:
    """Zero-phase Butterworth low-pass of [..., T] (= scipy sosfiltfilt)."""
    return lowpass_filter(float(fs), float(cutoff), int(order))(x)


def notch(x: torch.Tensor, fs: float, freq: float = 50.0, q: float = 30.0) -> torch.Tensor:
    """Remove powerline hum (50 or 60 Hz) from [..., T]: zero-phase iirnotch (= scipy filtfilt)."""
    return notch_filter(float(fs), float(freq), float(q))(x)


def powerline_frequency(x: torch.Tensor, fs: float) -> torch.Tensor:
    """Per-signal guess of the mains frequency [...] (50.0 or 60.0): which of the two carries more power."""
    t = torch.arange(x.shape[-1], dtype=x.dtype, device=x.device) / fs
    power = []
    for freq in (50.0, 60.0):
        if freq >= fs / 2:
            power.append(torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device))
            continue
        phase = 2 * math.pi * freq * t
        power.append((x * torch.cos(phase)).sum(-1) ** 2 + (x * torch.sin(phase)).sum(-1) ** 2)
    return torch.where(power[1] > power[0], 60.0, 50.0).to(x.dtype)
