"""Batched torch filters agree with scipy.signal on the same filters (1e-4 relative)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from heartfast.signal.filters import highpass, lowpass, notch, powerline_frequency, resample


def _rel(out: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.linalg.norm(out.double().numpy() - ref) / np.linalg.norm(ref))


def _walk(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random walk plus offset: baseline drift and broadband content, like a raw ECG lead."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).cumsum(-1) * 0.05 + rng.standard_normal(shape[:-1] + (1,))


@pytest.mark.parametrize("fs_in,fs_out,up,down,n", [
    (500, 250, 1, 2, 5001), (360, 500, 25, 18, 3601), (100, 500, 5, 1, 1001), (257, 500, 500, 257, 2571),
    (500, 100, 1, 5, 4999), (1000, 250, 1, 4, 2003),
])
def test_resample_matches_resample_poly(fs_in, fs_out, up, down, n):
    x = _walk((2, 3, n), seed=n)
    out = resample(torch.tensor(x, dtype=torch.float32), fs_in, fs_out)
    ref = scipy.signal.resample_poly(x, up, down, axis=-1)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert _rel(out, ref) < 1e-4


def test_resample_same_rate_is_a_copy():
    x = torch.randn(2, 101)
    y = resample(x, 500, 500)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("fs,n", [(500, 5001), (250, 2499), (360, 1207)])
def test_highpass_lowpass_match_sosfiltfilt(fs, n):
    x = _walk((3, 4, n), seed=fs)
    xt = torch.tensor(x, dtype=torch.float32)
    hp = scipy.signal.sosfiltfilt(scipy.signal.butter(2, 0.5, "highpass", fs=fs, output="sos"), x, axis=-1)
    lp = scipy.signal.sosfiltfilt(scipy.signal.butter(4, 40, "lowpass", fs=fs, output="sos"), x, axis=-1)
    assert _rel(highpass(xt, fs, 0.5), hp) < 1e-4
    assert _rel(lowpass(xt, fs, 40), lp) < 1e-4
    hp4 = scipy.signal.sosfiltfilt(scipy.signal.butter(4, 0.67, "highpass", fs=fs, output="sos"), x, axis=-1)
    assert _rel(highpass(xt, fs, 0.67, order=4), hp4) < 1e-4


@pytest.mark.parametrize("fs,freq,n", [(500, 50, 3001), (500, 60, 2999), (250, 50, 1001), (360, 60, 1799)])
def test_notch_matches_filtfilt(fs, freq, n):
    x = _walk((5, n), seed=n)
    b, a = scipy.signal.iirnotch(freq, 30, fs=fs)
    ref = scipy.signal.filtfilt(b, a, x, axis=-1)
    assert _rel(notch(torch.tensor(x, dtype=torch.float32), fs, freq, 30), ref) < 1e-4


def test_float64_agrees_to_machine_precision():
    x = _walk((2, 2001), seed=3)
    ref = scipy.signal.sosfiltfilt(scipy.signal.butter(2, 0.5, "highpass", fs=500, output="sos"), x)
    assert _rel(highpass(torch.tensor(x), 500), ref) < 1e-9


def test_notch_removes_hum_and_keeps_the_rest():
    fs, t = 500.0, torch.arange(5000) / 500.0
    slow = torch.sin(2 * torch.pi * 5 * t)
    out = notch(slow + 0.5 * torch.sin(2 * torch.pi * 60 * t), fs, 60)
    assert (out - slow)[500:-500].abs().max() < 0.01
    assert powerline_frequency(torch.stack([slow + 0.1 * torch.sin(2 * torch.pi * f * t) for f in (50, 60)]), fs).tolist() == [50, 60]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="too short"):
        highpass(torch.randn(3, 8), 500)
    with pytest.raises(ValueError, match="Nyquist"):
        lowpass(torch.randn(100), 100, 60)
    with pytest.raises(ValueError, match="positive"):
        resample(torch.randn(100), 0, 250)


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_resample_short_numpy_input(n):
    x = _walk((2, n), seed=n).astype(np.float32)
    for fs_in, fs_out, up, down in ((500, 250, 1, 2), (100, 500, 5, 1), (360, 500, 25, 18)):
        out = resample(x, fs_in, fs_out)
        ref = scipy.signal.resample_poly(x.astype(np.float64), up, down, axis=-1)
        assert isinstance(out, torch.Tensor) and out.shape == ref.shape
        assert _rel(out, ref) < 1e-4
