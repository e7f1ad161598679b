"""Backend choice for every op: the Triton kernel, an optional library, or the torch reference.

`HEARTFAST_BACKEND=torch|triton|auto` overrides (default auto). `auto` uses Triton on CUDA tensors when
triton imports, else the torch reference (the CPU path). Attention also accepts the library names
`flash-attn`, `xformers` and `sdpa` (see heartfast.ops.attention); every other op reads those as `auto`.
Forcing `triton` on CPU tensors only works under the Triton interpreter (`TRITON_INTERPRET=1`), which is
how the tests run kernels here.
"""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

import torch

BACKENDS = ("torch", "triton", "auto", "flash-attn", "xformers", "sdpa")


def requested_backend() -> str:
    value = os.environ.get("HEARTFAST_BACKEND", "auto").strip().lower()
    if value not in BACKENDS:
        raise ValueError(f"HEARTFAST_BACKEND={value!r}; expected one of {', '.join(BACKENDS)}")
    return value


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@lru_cache(maxsize=None)
def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def triton_usable(*tensors: torch.Tensor) -> bool:
    """True when a Triton kernel can run on these tensors (CUDA, or CPU under the interpreter)."""
    if not has_module("triton"):
        return False
    return all(t.is_cuda for t in tensors) or interpreting()


def use_triton(*tensors: torch.Tensor, backend: str | None = None) -> bool:
    """Decide between the Triton kernel and the torch reference for one call."""
    choice = (backend or requested_backend()).lower()
    if choice == "torch":
        return False
    if choice == "triton":
        if not triton_usable(*tensors):
            raise RuntimeError("HEARTFAST_BACKEND=triton needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
        return True
    return has_module("triton") and all(t.is_cuda for t in tensors)


def available_backends() -> list[str]:
    names = ["torch"]
    if has_module("triton"):
        names.append("triton" + ("" if torch.cuda.is_available() else " (interpreter only: no CUDA)"))
    names += [m for m in ("flash_attn", "xformers") if has_module(m)]
    return names
