"""The matplotlib reference renderer draws the same geometry as the torch renderer, and the paper
augmentation is seedable and leaves images alone when switched off."""
from __future__ import annotations

import math

import torch

from heartfast.render.augment import augment_paper
from heartfast.render.reference import MatplotlibRenderer
from heartfast.render.renderer import ECGRenderer, Style

INK_ONLY = Style(minor_rgb=(255, 255, 255), major_rgb=(255, 255, 255))


def _centres(images, rows: slice) -> torch.Tensor:
    dark = 1 - torch.as_tensor(images)[0, 0].float() / 255
    window = dark[rows]
    y = torch.arange(rows.start, rows.stop, dtype=torch.float32)[:, None] + 0.5
    return (window * y).sum(0) / window.sum(0).clamp_min(1e-6)


def test_reference_and_torch_traces_coincide():
    size = (1100, 850)
    signals = torch.full((1, 12, 5001), math.nan)
    t = torch.arange(5001) / 500
    signals[0, 1] = 0.8 * torch.sin(2 * math.pi * 0.9 * t) + 0.2 * torch.sin(2 * math.pi * 7 * t)   # lead II
    ours = ECGRenderer("3x4", size, style=INK_ONLY)
    reference = MatplotlibRenderer("3x4", size, style=INK_ONLY)
    a, b = ours(signals, 500.0), reference(signals.numpy(), 500.0)
    assert b.shape == tuple(a.shape) and b.dtype.name == "uint8"
    view, strip = ours.view, ours.layout.panels[12]   # the lead II rhythm strip; its label ends before 8 mm
    rows = slice(math.floor(view.y(strip.baseline_mm - 12)), math.ceil(view.y(strip.baseline_mm + 12)))
    cols = slice(math.ceil(view.x(strip.x_mm + 8)), math.floor(view.x(strip.x_mm + strip.width_mm - 2)))
    difference = (_centres(a, rows) - _centres(b, rows))[cols].abs()
    assert difference.median() < 0.3 and difference.max() < 1.5, (difference.median(), difference.max())
    # calibration pulses and labels land in the same places: the ink agrees almost everywhere
    ink_a, ink_b = torch.as_tensor(a)[0, 0] < 128, torch.as_tensor(b)[0, 0] < 128
    overlap = (ink_a & ink_b).sum() / (ink_a | ink_b).sum()
    assert overlap > 0.5, float(overlap)


def test_augmentation_is_seeded_and_identity_when_off():
    images = ECGRenderer("6x2", 160)(torch.randn(3, 12, 2600) * 0.2, 500.0)
    same = augment_paper(images, seed=7)
    assert torch.equal(same, augment_paper(images, seed=7))
    assert not torch.equal(same, augment_paper(images, seed=8))
    assert (same.int() - images.int()).abs().float().mean() > 1
    per_image = augment_paper(images, seed=[5, 6, 7])
    assert torch.equal(per_image[1:2], augment_paper(images[1:2], seed=[6]))
    off = augment_paper(images, seed=1, max_rotation_deg=0.0, max_blur_px=0.0, noise_std=0.0)
    assert torch.equal(off, images)
