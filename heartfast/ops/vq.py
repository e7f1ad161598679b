"""Residual vector quantization: `vq_assign` (inference) and `vq_ema_stats` (one training step's statistics).

Both take vectors x [N, D] and codebooks [L, K, D] (one per level) or [K, D] / [1, K, D] (one shared by
`levels` levels). Level l quantizes the residual left by levels < l to its nearest code (squared Euclidean,
computed as ||c||^2 - 2 x.c). The Triton kernel (heartfast.kernels.vq) fuses every level into one launch
and never builds the N x K distance matrix; the torch reference below is the float32-exact CPU path and
bounds memory by working on row chunks. Outputs carry no gradient: straight-through or rotation-trick
gradients are formed around them (heartfast.model.quantizer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from heartfast.ops.backend import use_triton


@dataclass
class VQAssignment:
    indices: torch.Tensor    # [N, L] int64: chosen code per level
    quantized: torch.Tensor  # [N, D]: sum of the chosen codes over levels (x's dtype)
    residual: torch.Tensor   # [N, D]: x - quantized, what a further level would quantize


@dataclass
class VQStats(VQAssignment):
    counts: torch.Tensor     # [L, K] fp32: rows assigned to each code at each level
    sums: torch.Tensor       # [L, K, D] fp32: sum of the level inputs assigned to each code
    sq_error: torch.Tensor   # [L] fp32: sum over rows of ||level input - chosen code||^2


def _level_books(x: torch.Tensor, codebooks: torch.Tensor, levels: int | None) -> tuple[torch.Tensor, int]:
    """Codebooks as [Lc, K, D] (Lc = 1 when shared) and the number of levels; checks the shapes."""
    if x.dim() != 2:
        raise ValueError(f"vectors must be [N, D], got shape {tuple(x.shape)}")
    if codebooks.dim() == 2:
        codebooks = codebooks[None]
        levels = 1 if levels is None else levels
    elif codebooks.dim() == 3 and codebooks.shape[0] == 1:  # one shared codebook
        levels = 1 if levels is None else levels
    elif codebooks.dim() == 3:
        if levels is not None and levels != codebooks.shape[0]:
            raise ValueError(f"{codebooks.shape[0]} per-level codebooks but levels={levels}")
        levels = codebooks.shape[0]
    else:
        raise ValueError(f"codebooks must be [K, D] or [L, K, D], got shape {tuple(codebooks.shape)}")
    if codebooks.shape[-1] != x.shape[1]:
        raise ValueError(f"vectors have {x.shape[1]} dims but codes have {codebooks.shape[-1]}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return codebooks, levels


def vq_reference(x: torch.Tensor, codebooks: torch.Tensor, levels: int | None = None, *,
                 stats: bool = False, chunk_rows: int = 8192) -> VQAssignment | VQStats:
    """Float32 residual VQ in plain torch, chunked over rows so at most chunk_rows x K distances exist."""
    books, levels = _level_books(x, codebooks, levels)
    books = books.float()
    norms = (books * books).sum(-1)  # [Lc, K]
    n, d = x.shape
    k = books.shape[1]
    indices = torch.empty(n, levels, dtype=torch.int64, device=x.device)
    quantized = torch.empty(n, d, dtype=torch.float32, device=x.device)
    residual = torch.empty(n, d, dtype=torch.float32, device=x.device)
    counts = torch.zeros(levels, k, device=x.device)
    sums = torch.zeros(levels, k, d, device=x.device)
    sq_error = torch.zeros(levels, device=x.device)
    for start in range(0, n, chunk_rows):
        rows = slice(start, start + chunk_rows)
        r = x[rows].float()
        q = torch.zeros_like(r)
        for level in range(levels):
            book = books[level if books.shape[0] > 1 else 0]
            distance = norms[level if books.shape[0] > 1 else 0] - 2.0 * (r @ book.T)
            chosen_idx = distance.argmin(dim=1)
            chosen = book[chosen_idx]
            if stats:
                counts[level] += torch.bincount(chosen_idx, minlength=k).float()
                sums[level].index_add_(0, chosen_idx, r)
            indices[rows, level] = chosen_idx
            r = r - chosen
            q = q + chosen
            if stats:
                sq_error[level] += (r * r).sum()
        quantized[rows] = q
        residual[rows] = r
    out = VQAssignment(indices, quantized.to(x.dtype), residual.to(x.dtype))
    return VQStats(out.indices, out.quantized, out.residual, counts, sums, sq_error) if stats else out


@torch.no_grad()
def vq_assign(x: torch.Tensor, codebooks: torch.Tensor, levels: int | None = None, *,
              backend: str | None = None, allow_tf32: bool = False) -> VQAssignment:
    """Nearest codes for every residual level: indices [N, L], quantized [N, D], residual [N, D]."""
    books, levels = _level_books(x, codebooks, levels)
    if use_triton(x, books, backend=backend):
        from heartfast.kernels.vq import rvq

        return VQAssignment(*rvq(x, books, levels, allow_tf32=allow_tf32))
    return vq_reference(x, books, levels)


@torch.no_grad()
def vq_ema_stats(x: torch.Tensor, codebooks: torch.Tensor, levels: int | None = None, *,
                 backend: str | None = None, allow_tf32: bool = False) -> VQStats:
    """`vq_assign` plus what an EMA codebook update and the commitment loss need: per-level code counts,
    per-code sums of the assigned level inputs, and the summed squared quantization error per level."""
    books, levels = _level_books(x, codebooks, levels)
    if use_triton(x, books, backend=backend):
        from heartfast.kernels.vq import rvq

        return VQStats(*rvq(x, books, levels, train=True, allow_tf32=allow_tf32))
    return vq_reference(x, books, levels, stats=True)
