"""Training checkpoints that resume exactly: model, optimizer, scheduler, RNG states and data position.

Written to a temporary file and renamed, so an interrupt while saving never leaves a broken checkpoint;
`latest.pt` always names a complete one.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, step: int, data_state: dict, extra: dict | None = None) -> Path:
    """Save everything needed to continue at `step`; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Trainable parameters and every buffer (EMA codebooks, statistics); frozen weights come from the base model.
    kept = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    payload = {
        "step": step,
        "model": {k: v for k, v in model.state_dict().items() if k in kept},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
        "data": data_state,
        "extra": extra or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None) -> dict:
    """Restore state saved by `save_checkpoint`; returns the payload (step, data, extra)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    missing = set(payload["model"]) - set(model.state_dict())
    if missing:
        raise ValueError(f"{path}: checkpoint has parameters the model lacks: {sorted(missing)[:5]}")
    model.load_state_dict(payload["model"], strict=False)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    return payload
