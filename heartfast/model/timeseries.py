"""GEM's time-series encoder: a Transformer over 50-sample patches of a 12 × 5000 ECG (10 s at 500 Hz, mV).

Each patch concatenates the 12 leads' 50 samples (600 values) → Linear to `dim`; a learned CLS token and
learned positions are added; pre-LN blocks with non-causal attention (`heartfast.ops.attention`); a final
LayerNorm. Output: [B, 1 + 100, dim] = 101 tokens × 768 for the GEM preset. Recordings shorter than 10 s are
zero-padded on the right, longer ones truncated, exactly as GEM feeds its encoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heartfast.ops.attention import attention

SAMPLE_RATE = 500


@dataclass(frozen=True)
class TimeSeriesConfig:
    leads: int = 12
    samples: int = 5000
    patch: int = 50
    dim: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        if self.samples % self.patch:
            raise ValueError(f"samples {self.samples} is not a multiple of patch {self.patch}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")

    @property
    def tokens(self) -> int:
        return self.samples // self.patch + 1

    @classmethod
    def preset(cls, name: str) -> "TimeSeriesConfig":
        presets = {"gem": cls(), "tiny": cls(dim=32, layers=1, heads=2)}
        if name not in presets:
            raise ValueError(f"unknown time-series preset {name!r}; choose from {', '.join(presets)}")
        return presets[name]


class EncoderBlock(nn.Module):
    def __init__(self, c: TimeSeriesConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)
        inner = c.mlp_ratio * c.dim
        self.mlp = nn.Sequential(nn.Linear(c.dim, inner), nn.GELU(), nn.Linear(inner, c.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, d // self.heads).unbind(2)
        x = x + self.proj(attention(q, k, v).reshape(b, s, d))
        return x + self.mlp(self.norm2(x))


class TimeSeriesEncoder(nn.Module):
    def __init__(self, config: TimeSeriesConfig) -> None:
        super().__init__()
        c = self.config = config
        self.patch_embed = nn.Linear(c.leads * c.patch, c.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.positions = nn.Parameter(0.02 * torch.randn(1, c.tokens, c.dim))
        self.blocks = nn.ModuleList(EncoderBlock(c) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.dim)

    @property
    def width(self) -> int:
        return self.config.dim

    def prepare(self, signals: torch.Tensor | np.ndarray, fs: float = SAMPLE_RATE) -> torch.Tensor:
        """[leads, T] or [B, leads, T] at fs -> [B, 12, 5000] at 500 Hz (resampled, zero-padded or cut)."""
        c = self.config
        x = torch.as_tensor(np.asarray(signals) if not torch.is_tensor(signals) else signals,
                            dtype=torch.float32, device=self.cls.device)
        if x.dim() == 2:
            x = x[None]
        if x.dim() != 3 or x.shape[1] > c.leads:
            raise ValueError(f"signals must be [B, <= {c.leads} leads, T], got shape {tuple(x.shape)}")
        if fs != SAMPLE_RATE:
            from heartfast.signal.filters import resample

            x = torch.as_tensor(resample(x.cpu().numpy(), fs, SAMPLE_RATE), dtype=torch.float32, device=x.device)
        x = F.pad(x, (0, 0, 0, c.leads - x.shape[1]))
        return F.pad(x, (0, max(0, c.samples - x.shape[-1])))[..., :c.samples]

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        """signals [B, 12, 5000] (see `prepare`) -> tokens [B, 101, dim] (CLS first)."""
        c = self.config
        if signals.shape[1:] != (c.leads, c.samples):
            raise ValueError(f"signals must be [B, {c.leads}, {c.samples}]; call prepare() first")
        b = signals.shape[0]
        patches = signals.reshape(b, c.leads, -1, c.patch).permute(0, 2, 1, 3).reshape(b, -1, c.leads * c.patch)
        x = self.patch_embed(patches.to(self.patch_embed.weight.dtype))
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.positions
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
