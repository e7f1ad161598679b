"""Paper-like augmentation of rendered ECG images, batched in torch and seedable.

Per image: a small rotation (scanner skew; the uncovered corners become white paper), a Gaussian blur of
random width (print/scan softness), and additive pixel noise. All random draws come from one
`torch.Generator` seeded by the caller (or one per image, so that an image's augmentation does not depend
on its batch), so a seed reproduces the same images on any device.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """[B, 2 * radius + 1] normalised 1-D Gaussian kernels; sigma 0 gives the identity."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=sigma.device)
    weights = torch.exp(-0.5 * (t / sigma.clamp_min(1e-3)[:, None]) ** 2)
    return weights / weights.sum(-1, keepdim=True)


def _draws(seed: int | Sequence[int], shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(uniform angle draws [B], uniform blur draws [B], standard normal noise [B, 3, H, W])."""
    if isinstance(seed, int):
        gen = torch.Generator().manual_seed(seed)
        draws = torch.rand(2, shape[0], generator=gen)
        return draws[0], draws[1], torch.randn(shape, generator=gen)
    if len(seed) != shape[0]:
        raise ValueError(f"{len(seed)} seeds for {shape[0]} images")
    per_image = [_draws(int(s), (1, *shape[1:])) for s in seed]
    return tuple(torch.cat(parts) for parts in zip(*per_image))


def augment_paper(images: torch.Tensor, seed: int | Sequence[int] = 0, max_rotation_deg: float = 2.0,
                  max_blur_px: float = 1.0, noise_std: float = 6.0) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> uint8 [B, 3, H, W] with per-image rotation in ±max_rotation_deg, blur sigma in
    [0, max_blur_px] and Gaussian noise of `noise_std` (0-255 scale). `seed`: one for the batch, or one
    per image."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    batch, channels, height, width = images.shape
    turn, blur, noise = _draws(seed, tuple(images.shape))
    angle = (turn * 2 - 1) * math.radians(max_rotation_deg)
    sigma = blur * max_blur_px
    noise = noise * noise_std
    device = images.device
    angle, sigma, noise = angle.to(device), sigma.to(device), noise.to(device)

    ink = 1 - images.float() / 255                          # rotate "ink", so that outside the page is white
    cos, sin = torch.cos(angle), torch.sin(angle)
    aspect = height / width
    theta = torch.stack([torch.stack([cos, -sin * aspect, torch.zeros_like(cos)], -1),
                         torch.stack([sin / aspect, cos, torch.zeros_like(cos)], -1)], 1)
    grid = F.affine_grid(theta, list(ink.shape), align_corners=False)
    ink = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    radius = max(1, math.ceil(3 * max_blur_px))
    kernels = _gaussian_kernels(sigma, radius).repeat_interleave(channels, 0)       # [B*3, K]
    flat = ink.reshape(1, batch * channels, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernels[:, None, None, :],
                    groups=batch * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernels[:, None, :, None],
                    groups=batch * channels)
    out = (1 - flat.reshape(ink.shape)) * 255 + noise
    return out.round_().clamp_(0, 255).to(torch.uint8)
