"""Safetensors checkpoint directories: read single-file or sharded (index.json) weights, write them back."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def safetensors_files(directory: str | Path) -> list[Path]:
    """The weight files of a checkpoint directory: the shards named by the index, or the single file."""
    directory = Path(directory)
    if (directory / INDEX).is_file():
        index = json.loads((directory / INDEX).read_text())
        shards = sorted(set(index.get("weight_map", {}).values()))
        if not shards:
            raise ValueError(f"{directory / INDEX}: weight_map is empty")
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{directory / INDEX}: shard files missing: {missing}")
        return [directory / s for s in shards]
    if (directory / SINGLE).is_file():
        return [directory / SINGLE]
    raise FileNotFoundError(f"{directory}: neither {SINGLE} nor {INDEX} found")


def load_safetensors_dir(directory: str | Path, dtype: torch.dtype | None = None,
                         device: str | torch.device = "cpu", prefix: str = "") -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory (optionally only those under `prefix`, with it stripped)."""
    state: dict[str, torch.Tensor] = {}
    for path in safetensors_files(directory):
        for name, tensor in load_file(str(path), device=str(device)).items():
            if not name.startswith(prefix):
                continue
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            state[name[len(prefix):]] = tensor
    return state


def save_state(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write one safetensors file; tied (shared-storage) tensors are stored once each by name."""
    seen: dict[int, str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        key = tensor.data_ptr()
        if key in seen and tensor.numel():
            continue
        seen[key] = name
        tensor = tensor.detach().contiguous().cpu()
        if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()      # a view into a larger buffer (fused projections): safetensors wants its own
        out[name] = tensor
    save_file(out, str(path))
