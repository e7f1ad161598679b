"""Paged-KV attention for the engine: cache writes by slot, decode steps, prefill over cached prefixes.

Cache layout: k_cache / v_cache [num_blocks, block_size, Hkv, D]; block_tables int32 [batch, max_blocks]
maps sequence b's logical block i (positions i*block_size ...) to a physical block; seq_lens int32 [batch]
counts the tokens cached for b (new tokens included once written). A slot is block * block_size + offset;
slot -1 marks a padding token that is not written.

Backends: `triton` (heartfast.kernels.paged_attention), `flash-attn` for decode (flash_attn_with_kvcache;
FA2 needs block_size % 256 == 0) and the torch reference (`torch`/`sdpa`: gather each sequence's blocks and
run dense attention; the CPU path). `auto` uses Triton on CUDA tensors, the reference otherwise; where
an op has no flash-attn path, `flash-attn` reads as `auto`.
"""
from __future__ import annotations

import torch

from heartfast.ops.attention import PADDING_WASTE_LIMIT, attention_reference, sdpa_grouped
from heartfast.ops.backend import has_module, requested_backend, use_triton

FLASH_ATTN_PAGE_MULTIPLE = 256


def _wants(backend: str | None, *tensors: torch.Tensor, flash_attn: bool = False) -> str:
    """'triton', 'flash-attn' (only where the op has a flash-attn path) or 'torch' for this call."""
    choice = (backend or requested_backend()).lower()
    if choice == "flash-attn" and flash_attn:
        return "flash-attn"
    if choice in ("sdpa", "xformers"):  # no paged path of their own: the torch reference
        return "torch"
    return "triton" if use_triton(*tensors, backend=choice) else "torch"


def gather_cache(cache: torch.Tensor, block_table: torch.Tensor, length: int) -> torch.Tensor:
    """The first `length` cached rows [length, Hkv, D] of one sequence, in position order."""
    return gather_padded(cache, block_table[None], length)[0]


def gather_padded(cache: torch.Tensor, block_tables: torch.Tensor, max_len: int) -> torch.Tensor:
    """Every sequence's first `max_len` cached rows at once: [batch, max_len, Hkv, D] (rows past a length are junk)."""
    blocks = block_tables[:, : -(-max_len // cache.shape[1])].long().clamp_min(0)   # tables may pad with -1
    # index_select: ~3x advanced indexing on CPU
    rows = cache.index_select(0, blocks.flatten()).unflatten(0, blocks.shape)   # [batch, n_blocks, block, Hkv, D]
    return rows.flatten(1, 2)[:, :max_len]


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                      scale: float | None) -> torch.Tensor:
    """Masked SDPA without repeating KV heads: q [B, Sq, Hq, D], k/v [B, L, Hkv, D], mask [B, Sq, L]
    (True = attend) -> [B, Sq, Hq, D]; rows that attend to nothing give zeros."""
    empty = ~mask.any(dim=-1)                                   # [B, Sq]
    mask = mask.clone()
    mask[..., 0] |= empty                                       # keep SDPA finite; zeroed below
    out = sdpa_grouped(q.transpose(1, 2), k.transpose(1, 2).to(q.dtype), v.transpose(1, 2).to(q.dtype),
                       attn_mask=mask[:, None], scale=scale)
    return out.transpose(1, 2).masked_fill(empty[..., None, None], 0.0)


def reshape_and_cache_reference(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                                slot_mapping: torch.Tensor) -> None:
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    k_cache.flatten(0, 1).index_copy_(0, slots, k[keep].to(k_cache.dtype))  # flatten of a contiguous cache is a view
    v_cache.flatten(0, 1).index_copy_(0, slots, v[keep].to(v_cache.dtype))


def paged_decode_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                           seq_lens: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """All sequences in one batched, masked attention over their gathered caches (the CPU path)."""
    max_len = max(int(seq_lens.max()), 1)
    k, v = gather_padded(k_cache, block_tables, max_len), gather_padded(v_cache, block_tables, max_len)
    mask = (torch.arange(max_len, device=q.device) < seq_lens[:, None].to(q.device))[:, None]
    return grouped_attention(q[:, None], k, v, mask, scale)[:, 0]


def paged_prefill_reference(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                            block_tables: torch.Tensor, cu_seqlens_q: torch.Tensor, seq_lens: torch.Tensor,
                            scale: float | None = None) -> torch.Tensor:
    """Packed new tokens padded to [batch, max_q], causal over cached prefix + themselves, unpadded again.

    When no sequence has a cached prefix, right padding is harmless under a plain causal mask (pads come last),
    so SDPA runs with `is_causal` (its fused CPU kernel) instead of an explicit mask."""
    starts, q_lens = cu_seqlens_q[:-1].long(), (cu_seqlens_q[1:] - cu_seqlens_q[:-1]).long()
    lens = seq_lens.long().to(q.device)
    max_q, max_len = max(int(q_lens.max()), 1), max(int(lens.max()), 1)
    if not (torch.is_grad_enabled() and q.requires_grad) and \
            q_lens.numel() * max_q * max_len > PADDING_WASTE_LIMIT * float((q_lens * lens).sum()):
        return _prefill_each(q, k_cache, v_cache, block_tables, cu_seqlens_q.tolist(), lens.tolist(), scale)
    offsets = torch.arange(max_q, device=q.device)
    valid = offsets < q_lens[:, None]                                   # [n, max_q]
    rows = (starts[:, None] + offsets).clamp_max(max(q.shape[0] - 1, 0))
    padded = q[rows]                                                    # [n, max_q, Hq, D]
    k, v = gather_padded(k_cache, block_tables, max_len), gather_padded(v_cache, block_tables, max_len)
    if torch.equal(lens, q_lens):
        out = sdpa_grouped(padded.transpose(1, 2), k.transpose(1, 2).to(q.dtype), v.transpose(1, 2).to(q.dtype),
                           is_causal=True, scale=scale).transpose(1, 2)
        return out[valid]
    positions = lens[:, None] - q_lens[:, None] + offsets               # absolute position of each query
    keys = torch.arange(max_len, device=q.device)
    mask = (keys <= positions[..., None]) & (keys < lens[:, None, None]) & valid[..., None]
    return grouped_attention(padded, k, v, mask, scale)[valid]


def _prefill_each(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                  bounds: list[int], lens: list[int], scale: float | None) -> torch.Tensor:
    """One attention call per sequence: a step that mixes whole prompts with short suffixes after a cached
    prefix would otherwise pad every suffix to the longest prompt (Heartcare-Bench: 3.6x the work). The
    sequences with one new token (decode steps riding along) share one batched decode call."""
    out = torch.empty_like(q)
    singles = [i for i in range(len(lens)) if bounds[i + 1] - bounds[i] == 1]
    batched = set(singles) if len(singles) > 1 else set()
    if batched:
        rows = torch.tensor([bounds[i] for i in singles], device=q.device)
        which = torch.tensor(singles, device=block_tables.device)
        out[rows] = paged_decode_reference(q[rows], k_cache, v_cache, block_tables[which],
                                           torch.tensor([lens[i] for i in singles], dtype=torch.int32), scale)
    for i, (start, stop, length) in enumerate(zip(bounds[:-1], bounds[1:], lens)):
        if stop == start or i in batched:
            continue
        k = gather_cache(k_cache, block_tables[i], length)[None].to(q.dtype)
        v = gather_cache(v_cache, block_tables[i], length)[None].to(q.dtype)
        out[start:stop] = attention_reference(q[None, start:stop], k, v, causal=True, scale=scale)[0]
    return out


def _check(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
           seq_lens: torch.Tensor) -> None:
    if k_cache.dim() != 4 or v_cache.shape != k_cache.shape:
        raise ValueError(f"k_cache/v_cache must both be [num_blocks, block_size, Hkv, D]; got "
                         f"{tuple(k_cache.shape)} and {tuple(v_cache.shape)}")
    if q.shape[-1] != k_cache.shape[3] or q.shape[-2] % k_cache.shape[2]:
        raise ValueError(f"queries {tuple(q.shape)} do not fit the cache {tuple(k_cache.shape)}: same head dim "
                         "and Hq a multiple of Hkv needed")
    if block_tables.dtype != torch.int32 or seq_lens.dtype != torch.int32 or block_tables.dim() != 2:
        raise ValueError("block_tables must be int32 [batch, max_blocks] and seq_lens int32 [batch]")


def reshape_and_cache(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                      slot_mapping: torch.Tensor, *, backend: str | None = None) -> None:
    """Write new k/v [T, Hkv, D] into the paged caches in place at slot_mapping [T] (-1: skip)."""
    if k.shape != v.shape or k.dim() != 3 or k.shape[1:] != k_cache.shape[2:] or slot_mapping.shape != k.shape[:1]:
        raise ValueError(f"k/v {tuple(k.shape)} must be [T, Hkv, D] matching the cache {tuple(k_cache.shape)} "
                         f"with one slot per token (slot_mapping {tuple(slot_mapping.shape)})")
    if _wants(backend, k, k_cache) == "triton":
        from heartfast.kernels.paged_attention import reshape_and_cache as kernel

        kernel(k, v, k_cache, v_cache, slot_mapping)
    else:
        reshape_and_cache_reference(k, v, k_cache, v_cache, slot_mapping)


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                 seq_lens: torch.Tensor, scale: float | None = None, *, num_splits: int | None = None,
                 max_seq_len: int | None = None, backend: str | None = None) -> torch.Tensor:
    """One decode step: q [B, Hq, D] over each sequence's seq_lens[b] cached tokens -> [B, Hq, D].

    Triton splits long contexts across programs when the batch is small (`num_splits` None: automatic,
    1: off); `max_seq_len` (optional) bounds the longest context, sparing a device sync.
    """
    _check(q, k_cache, v_cache, block_tables, seq_lens)
    wanted = _wants(backend, q, k_cache, flash_attn=True)
    if wanted == "flash-attn":
        if not (has_module("flash_attn") and q.is_cuda and k_cache.shape[1] % FLASH_ATTN_PAGE_MULTIPLE == 0):
            raise RuntimeError("flash-attn paged decode needs flash_attn installed, CUDA tensors and block_size "
                               f"a multiple of {FLASH_ATTN_PAGE_MULTIPLE}")
        from flash_attn import flash_attn_with_kvcache

        return flash_attn_with_kvcache(q[:, None], k_cache, v_cache, cache_seqlens=seq_lens,
                                       block_table=block_tables, softmax_scale=scale)[:, 0]
    if wanted == "triton":
        from heartfast.kernels.paged_attention import paged_decode as kernel

        return kernel(q, k_cache, v_cache, block_tables, seq_lens, scale, num_splits=num_splits,
                      max_seq_len=max_seq_len)
    return paged_decode_reference(q, k_cache, v_cache, block_tables, seq_lens, scale)


def paged_prefill(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                  cu_seqlens_q: torch.Tensor, seq_lens: torch.Tensor, scale: float | None = None, *,
                  max_seqlen_q: int | None = None, backend: str | None = None) -> torch.Tensor:
    """Packed new tokens q [T, Hq, D] (cu_seqlens_q) attend causally over cached prefix + themselves.

    seq_lens counts each sequence's whole context including the new tokens, whose K/V must already be
    in the cache (write them with `reshape_and_cache` first).
    """
    _check(q, k_cache, v_cache, block_tables, seq_lens)
    if cu_seqlens_q.dtype != torch.int32 or cu_seqlens_q.numel() != seq_lens.numel() + 1:
        raise ValueError("cu_seqlens_q must be int32 [batch + 1] alongside seq_lens [batch]")
    if not seq_lens.is_cuda and bool((cu_seqlens_q[1:] - cu_seqlens_q[:-1] > seq_lens).any()):  # free off the GPU
        raise ValueError("a sequence has more new tokens than its seq_lens: seq_lens must count the cached "
                         "prefix plus the new tokens")
    if _wants(backend, q, k_cache) == "triton":
        from heartfast.kernels.paged_attention import paged_prefill as kernel

        if max_seqlen_q is None:
            max_seqlen_q = int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max().item())
        return kernel(q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, scale, max_seqlen_q=max_seqlen_q)
    return paged_prefill_reference(q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, scale)
