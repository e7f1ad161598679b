"""Learning-rate schedules with linear warm-up: cosine (Beat, GEM) and linear (HeartcareGPT sft)."""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if kind == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif kind == "linear":
        decay = 1.0 - progress
    elif kind == "constant":
        decay = 1.0
    else:
        raise ValueError(f"unknown schedule {kind!r}; expected cosine, linear or constant")
    return min_ratio + (1.0 - min_ratio) * decay


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    kind: str = "cosine", min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, kind, min_ratio))
