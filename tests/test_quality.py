"""Signal quality, best-window choice and the Beat normalisation."""
from __future__ import annotations

import torch

from heartfast.signal.filters import resample
from heartfast.signal.quality import (
    BEAT_FS, beat_normalize, beat_windows, clean, signal_quality, window_quality, window_starts,
)
from heartfast.signal.synthetic import generate


def _clean_ecg(n: int = 3, seed: int = 0) -> torch.Tensor:
    return generate(n, seed=seed, noise=0.2, findings=["SR"]).signals


def test_quality_separates_clean_noise_flat_saturated_and_nan():
    x = clean(_clean_ecg()[:, 1], 500)
    noise = torch.randn_like(x) * 0.3
    flat = torch.full_like(x, 0.2) + 1e-4 * torch.randn_like(x)
    clipped = x.clamp(max=0.1)
    q = signal_quality(torch.stack([x, noise, flat, clipped]), 500)
    assert torch.all(q[0] > 0.6) and torch.all(q[1] < 0.3)
    assert torch.all(q[2] == 0) and torch.all(q[3] == 0)
    assert torch.all(signal_quality(x, 500, valid=torch.zeros(3, dtype=torch.bool)) == 0)


def test_windows_cover_the_end():
    assert window_starts(2500, 1500, 125).tolist()[-1] == 1000
    assert window_starts(1600, 1500, 125).tolist() == [0, 100]


def _chosen_start(inputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Start (at 250 Hz) of each chosen window: the candidate start whose normalised input part matches."""
    starts = window_starts(reference.shape[-1], 1500, 125)
    candidates = torch.stack([reference[..., s:s + 1000] for s in starts.tolist()], 2)   # [B, L, S, 1000]
    mean = candidates.mean(-1, keepdim=True)
    std = (candidates - mean).transpose(1, 2).flatten(-2).std(-1)[:, None, :, None]
    error = ((candidates - mean) / std - inputs[:, :, None, :]).abs().amax(-1).amax(1)
    return starts[error.argmin(-1)]


def test_beat_windows_pick_the_clean_half():
    x = _clean_ecg(4, seed=1)
    torch.manual_seed(1)
    noisy_first = x.clone()
    noisy_first[..., :2500] += 0.4 * torch.randn_like(noisy_first[..., :2500])
    noisy_last = x.clone()
    noisy_last[..., 2500:] += 0.4 * torch.randn_like(noisy_last[..., 2500:])
    for corrupted, clean_from, clean_to in ((noisy_first, 625, 1000), (noisy_last, 0, 125)):
        inputs, targets = beat_windows(corrupted, 500)
        assert inputs.shape == (4, 12, 1000) and targets.shape == (4, 12, 500)
        reference = clean(resample(corrupted, 500, BEAT_FS), BEAT_FS)
        start = _chosen_start(inputs, reference)
        assert torch.all((start >= clean_from) & (start <= clean_to)), start


def test_nan_samples_steer_the_window_away():
    x = _clean_ecg(2, seed=2)
    x[:, 3, 100:120] = float("nan")      # 0.2-0.24 s: windows starting before 60 (at 250 Hz) hold NaNs
    inputs, targets = beat_windows(x, 500)
    assert torch.isfinite(inputs).all() and torch.isfinite(targets).all()
    cleaned = clean(resample(torch.nan_to_num(x), 500, BEAT_FS), BEAT_FS)
    assert torch.all(_chosen_start(inputs, cleaned) >= 125)


def test_missing_leads_do_not_lower_quality():
    x = clean(_clean_ecg(2, seed=3), 500)
    starts = window_starts(x.shape[-1], 3000, 500)
    full = window_quality(x, 500, 3000, starts)
    x[:, 6:] = 0
    torch.testing.assert_close(window_quality(x, 500, 3000, starts), full, atol=0.1, rtol=0)


def test_beat_normalisation_statistics():
    inputs, targets = torch.randn(3, 12, 1000) * 2 + 5, torch.randn(3, 12, 500) * 2 + 5
    ni, nt = beat_normalize(inputs, targets)
    torch.testing.assert_close(ni.mean(-1), torch.zeros(3, 12), atol=1e-5, rtol=0)
    torch.testing.assert_close(ni.flatten(1).std(-1), torch.ones(3), atol=1e-4, rtol=0)
    mean = inputs.mean(-1, keepdim=True)
    torch.testing.assert_close(nt * (inputs - mean).flatten(1).std(-1)[:, None, None] + mean, targets)


def test_short_records_are_left_padded():
    x = _clean_ecg(2)[..., :2000]   # 4 s at 500 Hz
    inputs, targets = beat_windows(x, 500)
    assert inputs.shape == (2, 12, 1000) and targets.shape == (2, 12, 500)
    assert torch.all(inputs[..., :400] == inputs[..., :1])
