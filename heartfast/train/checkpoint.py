"""Training checkpoints that resume exactly: model, optimizer, scheduler, RNG states and data position.

One format whatever the parallelism: the trainable parameters and every buffer as full (unsharded) CPU
tensors keyed by parameter name, the optimizer state keyed by the same names, and each process's RNG
states. So a checkpoint written under FSDP loads into a single-process model, and the other way round.
Under FSDP gathering the state is collective: every process calls `save_checkpoint`, rank 0 writes.

Written to a temporary file and renamed, so an interrupt while saving never leaves a broken checkpoint;
`latest.pt` always names a complete one.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_state_dict)

from heartfast.train.distributed import gather_objects, process_rank

CHECKPOINT_FORMAT = 2   # 2: name-keyed optimizer state and one RNG state per process (2026-11-22)

# Frozen weights come from the base model; only rank 0 receives the gathered tensors.
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
# Every process reads the full tensors and keeps its own shard; absent (frozen) weights stay as they are.
_SCATTER = StateDictOptions(full_state_dict=True, strict=False)


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


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, unsharded, on the CPU: the way trained weights leave an FSDP run.

    Collective under FSDP: every process calls it; rank 0 receives the tensors, the others an empty dict.
    """
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, step: int, data_state: dict, extra: dict | None = None,
                    write: bool = True) -> Path:
    """Save everything needed to continue at `step`; returns the path (written where `write`).

    Under a process group every process must call it (parameters and RNG states are gathered); pass
    `write=True` on one of them.
    """
    path = Path(path)
    model_state, optimizer_state = get_state_dict(model, optimizer, options=_GATHER)
    rngs = gather_objects(rng_state())
    if not write:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": model_state,               # trainable parameters and buffers (EMA codebooks, statistics)
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rngs,                        # one entry per process, in rank order
        "data": data_state,
        "extra": extra or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler=None) -> dict:
    """Restore state saved by `save_checkpoint` (every process calls it under FSDP); returns the payload.

    Each process takes the RNG states of its rank (rank 0's when the checkpoint came from fewer processes).
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: a checkpoint in format {payload.get('format', 1)} (an older heartfast); this "
                         f"version resumes format {CHECKPOINT_FORMAT} only. Move the file away to train this stage "
                         "from the start, or resume it with the version that wrote it.")
    missing = set(payload["model"]) - set(model.state_dict())
    if missing:
        raise ValueError(f"{path}: checkpoint has parameters the model lacks: {sorted(missing)[:5]}")
    if optimizer is not None:
        set_state_dict(model, optimizer, model_state_dict=payload["model"],
                       optim_state_dict=payload["optimizer"], options=_SCATTER)
    else:
        set_model_state_dict(model, payload["model"], options=_SCATTER)
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    rngs, rank = payload["rng"], process_rank()
    set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
    return payload
