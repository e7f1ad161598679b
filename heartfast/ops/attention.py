"""`attention`: the one call site for scaled-dot-product attention in models and the engine.

Layout follows flash-attn: q [B, S, Hq, D], k/v [B, Sk, Hkv, D] with Hq % Hkv == 0 (grouped-query),
or packed varlen q/k/v [T, H, D] with `cu_seqlens` (int32 [n + 1]) so batches never pay for padding.
Causal with Sk > S aligns the queries to the end of the keys (a cached prefix followed by the new chunk).

Backends: `triton` (heartfast.kernels.flash_attention), `flash-attn`, `xformers`, `sdpa` (PyTorch; with
GQA heads repeated, and varlen looped per sequence: the float32-exact reference and the CPU path). `auto`
(default; `HEARTFAST_BACKEND` or the `backend` argument override it) takes the first usable entry of
`AUTO_ORDER` on CUDA fp16/bf16 and SDPA otherwise; `torch` means `sdpa`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from heartfast.ops.backend import has_module, requested_backend, triton_usable

ATTENTION_BACKENDS = ("triton", "flash-attn", "xformers", "sdpa")
# flash-attn first: the proven FA2 kernel wherever it is installed, until the GPU suite
# (benchmarks/gpu/attention.py) measures the Triton kernel ahead of it; the Triton kernel otherwise.
AUTO_ORDER = ("flash-attn", "triton", "xformers", "sdpa")
HALF = (torch.float16, torch.bfloat16)
TRITON_MAX_HEAD_DIM = 128
FLASH_ATTN_MAX_HEAD_DIM = 256
_MODULES = {"flash-attn": "flash_attn", "xformers": "xformers"}


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                        scale: float | None = None) -> torch.Tensor:
    """Dense attention over [B, S, H, D] tensors via SDPA (grouped-query heads through `sdpa_grouped`)."""
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    # Causal with Sk > S aligns the query block to the end of the keys (cached prefix + new chunk).
    mask = None
    if causal and kt.shape[2] != qt.shape[2]:
        s, sk = qt.shape[2], kt.shape[2]
        mask = torch.ones(s, sk, dtype=torch.bool, device=q.device).tril(diagonal=sk - s)
        causal = False
    return sdpa_grouped(qt, kt, vt, attn_mask=mask, is_causal=causal, scale=scale).transpose(1, 2)


def sdpa_grouped(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                 is_causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """SDPA over [B, H, S, D] with fewer key/value heads than query heads (query head h reads KV head
    h // group). CUDA kernels take the groups natively; on CPU `enable_gqa` runs ~3x slower than plain SDPA
    (torch 2.13, one thread, 250 tokens), so there a single query row folds each group's heads into rows
    of one KV head, and longer queries repeat the KV heads."""
    hq, hkv = q.shape[-3], k.shape[-3]
    if hq == hkv:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    if q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale,
                                              enable_gqa=True)
    group = hq // hkv
    if q.shape[-2] == 1 and q.dim() == 4 and not is_causal and \
            (attn_mask is None or attn_mask.dim() < 3 or attn_mask.shape[-3] == 1):
        b, _, _, d = q.shape
        out = F.scaled_dot_product_attention(q.reshape(b, hkv, group, d), k, v, attn_mask=attn_mask, scale=scale)
        return out.reshape(b, hq, 1, d)
    k, v = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)


def _sdpa(q, k, v, causal, scale, cu_seqlens) -> torch.Tensor:
    if cu_seqlens is None:
        return attention_reference(q, k, v, causal=causal, scale=scale)
    return _sdpa_varlen(q, k, v, causal, scale, cu_seqlens)


PADDING_WASTE_LIMIT = 1.5   # at most this much attention work lost to padding (inference: else one call each)


def _sdpa_varlen(q, k, v, causal, scale, cu_seqlens) -> torch.Tensor:
    """Packed sequences scattered into right-padded [n, max_len] batches for SDPA, then gathered back.

    Right padding is exact under a causal mask (a query never sees a later pad); without one, pad keys are
    masked. Only attention pays for padding (n · max_len² instead of Σ len²), and scatter/gather are single
    index ops, so autograd does not zero-fill a full-size gradient per sequence as slicing would. Sequences
    of similar length share a batch (`length_groups`): one 700-token answer among 100-token ones would
    otherwise make every row pay for 700² (7x the work in the demo's sft batches). Without autograd and with
    lengths far apart, each sequence gets its own SDPA call instead. The bounds are read to the host once.
    """
    bounds = cu_seqlens.tolist()
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if not needs_grad and len(lengths) * max(lengths) ** 2 > PADDING_WASTE_LIMIT * sum(n * n for n in lengths):
        return _sdpa_each(q, k, v, causal, scale, bounds)
    groups = length_groups(lengths)
    if len(groups) == 1:
        return _sdpa_padded(q, k, v, causal, scale, lengths)
    parts, order = [], []
    for group in groups:
        members = sorted(group)
        rows = torch.from_numpy(np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in members]))
        rows = rows.to(q.device)
        parts.append(_sdpa_padded(q.index_select(0, rows), k.index_select(0, rows), v.index_select(0, rows),
                                  causal, scale, [lengths[i] for i in members]))
        order.append(rows)
    return torch.cat(parts).index_select(0, torch.argsort(torch.cat(order)))


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Sequence indices in batches whose padding wastes at most PADDING_WASTE_LIMIT of their attention work:
    longest first, each batch taking the next longest while count · longest² stays within the limit."""
    groups: list[list[int]] = []
    longest = squares = 0
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        n = lengths[i]
        if groups and (len(groups[-1]) + 1) * longest ** 2 <= PADDING_WASTE_LIMIT * (squares + n * n):
            groups[-1].append(i)
            squares += n * n
        else:
            groups.append([i])
            longest, squares = n, n * n
    return groups


def _sdpa_padded(q, k, v, causal, scale, lengths: list[int]) -> torch.Tensor:
    """Packed q/k/v of sequences with these lengths through one right-padded SDPA call (no host sync)."""
    count, width = len(lengths), max(lengths)
    slots = torch.from_numpy(np.concatenate([i * width + np.arange(n) for i, n in enumerate(lengths)]))
    slots = slots.to(q.device)

    def padded(x: torch.Tensor) -> torch.Tensor:
        rows = x.new_zeros(count * width, *x.shape[1:]).index_copy(0, slots, x)
        return rows.view(count, width, *x.shape[1:]).transpose(1, 2)            # [n, H, max_len, D]

    mask = None
    if not causal:
        mask = (torch.arange(width) < torch.tensor(lengths)[:, None])[:, None, None].to(q.device)
    out = sdpa_grouped(padded(q), padded(k), padded(v), attn_mask=mask, is_causal=causal, scale=scale)
    return out.transpose(1, 2).reshape(count * width, *q.shape[1:]).index_select(0, slots)


def _sdpa_each(q, k, v, causal, scale, bounds: list[int]) -> torch.Tensor:
    """One attention call per packed sequence (slices of q/k/v; no padding)."""
    out = torch.empty_like(q)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        out[start:stop] = attention_reference(q[None, start:stop], k[None, start:stop], v[None, start:stop],
                                              causal=causal, scale=scale)[0]
    return out


def _triton(q, k, v, causal, scale, cu_seqlens, max_seqlen) -> torch.Tensor:
    from heartfast.kernels.flash_attention import flash_attention

    if cu_seqlens is None:
        return flash_attention(q, k, v, causal=causal, scale=scale)
    return flash_attention(q, k, v, causal=causal, scale=scale, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens,
                           max_seqlen_q=max_seqlen, max_seqlen_k=max_seqlen)


def _flash_attn(q, k, v, causal, scale, cu_seqlens, max_seqlen) -> torch.Tensor:
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    if cu_seqlens is None:
        return flash_attn_func(q, k, v, softmax_scale=scale, causal=causal)
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, softmax_scale=scale,
                                  causal=causal)


def _xformers(q, k, v, causal, scale, cu_seqlens) -> torch.Tensor:
    from xformers.ops import fmha

    bias = None
    if cu_seqlens is not None:
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        mask_type = fmha.attn_bias.BlockDiagonalCausalMask if causal else fmha.attn_bias.BlockDiagonalMask
        bias = mask_type.from_seqlens(lengths)
        q, k, v = q[None], k[None], v[None]
    elif causal:
        bias = (fmha.attn_bias.LowerTriangularMask() if q.shape[1] == k.shape[1]
                else fmha.attn_bias.LowerTriangularFromBottomRightMask())
    batch, seq, heads, dim = q.shape
    kv_heads = k.shape[2]
    groups = heads // kv_heads
    if groups > 1:  # BMGHK: a broadcast view of the KV heads, no copy
        q = q.view(batch, seq, kv_heads, groups, dim)
        k = k[:, :, :, None].expand(-1, -1, -1, groups, -1)
        v = v[:, :, :, None].expand(-1, -1, -1, groups, -1)
    out = fmha.memory_efficient_attention(q, k, v, attn_bias=bias, scale=scale).reshape(batch, seq, heads, dim)
    return out[0] if cu_seqlens is not None else out


def backend_supports(name: str, q: torch.Tensor) -> bool:
    """Whether backend `name` is installed and handles q's device, dtype and head dim."""
    if name == "sdpa":
        return True
    if name == "triton":
        return triton_usable(q) and q.shape[-1] <= TRITON_MAX_HEAD_DIM
    if not has_module(_MODULES[name]) or not q.is_cuda:
        return False
    if name == "flash-attn":
        return q.dtype in HALF and q.shape[-1] <= FLASH_ATTN_MAX_HEAD_DIM and q.shape[-1] % 8 == 0
    return q.dtype in HALF + (torch.float32,)


def choose_backend(q: torch.Tensor, backend: str | None = None) -> str:
    """Resolve `backend` (or HEARTFAST_BACKEND) to one of ATTENTION_BACKENDS for tensors like q."""
    choice = (backend or requested_backend()).lower()
    if choice == "torch":
        return "sdpa"
    if choice in ATTENTION_BACKENDS:
        if not backend_supports(choice, q):
            raise RuntimeError(f"attention backend {choice!r} cannot run {q.dtype} head dim {q.shape[-1]} on "
                               f"{q.device} here (not installed, no CUDA, or unsupported shape)")
        return choice
    if choice != "auto":
        raise ValueError(f"unknown attention backend {choice!r}; expected auto, torch or {ATTENTION_BACKENDS}")
    if q.is_cuda and q.dtype in HALF:
        return next(name for name in AUTO_ORDER if backend_supports(name, q))
    return "sdpa"


def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                  cu_seqlens: torch.Tensor | None) -> None:
    packed = cu_seqlens is not None
    if q.dim() != (3 if packed else 4) or k.dim() != q.dim() or v.shape != k.shape:
        layout = "[T, H, D] with cu_seqlens" if packed else "[B, S, H, D]"
        raise ValueError(f"attention expects q/k/v as {layout}; got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1] or q.shape[-2] % k.shape[-2]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} need the same head dim and Hq % Hkv == 0")
    if packed and (cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1 or q.shape[0] != k.shape[0]):
        raise ValueError("cu_seqlens must be int32 [n + 1] over packed q/k/v with the same number of rows")
    if packed and not cu_seqlens.is_cuda and int(cu_seqlens[-1]) != q.shape[0]:  # free to check off the GPU
        raise ValueError(f"cu_seqlens ends at {int(cu_seqlens[-1])} but q has {q.shape[0]} packed rows")
    if not packed and (q.shape[0] != k.shape[0] or (causal and k.shape[1] < q.shape[1])):
        raise ValueError(f"batch sizes differ or causal attention has fewer keys than queries: q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              scale: float | None = None, cu_seqlens: torch.Tensor | None = None,
              max_seqlen: int | None = None, backend: str | None = None) -> torch.Tensor:
    """Attention output shaped like q. With `cu_seqlens`, q/k/v are packed [T, H, D] sequences."""
    _check_shapes(q, k, v, causal, cu_seqlens)
    name = choose_backend(q, backend)
    if name == "sdpa":
        return _sdpa(q, k, v, causal, scale, cu_seqlens)
    if name == "xformers":
        return _xformers(q, k, v, causal, scale, cu_seqlens)
    if cu_seqlens is not None and max_seqlen is None:
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max().item())
    if name == "flash-attn":
        return _flash_attn(q, k, v, causal, scale, cu_seqlens, max_seqlen)
    return _triton(q, k, v, causal, scale, cu_seqlens, max_seqlen)
