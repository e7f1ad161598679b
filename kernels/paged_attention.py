"""Paged-KV attention in Triton: cache writes by slot, decode (with split-KV) and prefix prefill.

Cache layout (the engine's): k_cache / v_cache [num_blocks, block_size, Hkv, D]; sequence b's token at
position p lives in block block_tables[b, p // block_size] (int32 [batch, max_blocks]) at offset
p % block_size; seq_lens (int32 [batch]) counts its cached tokens. A slot is block * block_size + offset.
Grouped-query: query head h reads KV head h // (Hq // Hkv).

- `reshape_and_cache`: copy new K/V rows [T, Hkv, D] to their slots (slot -1: padding, skipped).
  Bytes: 4·T·Hkv·D·itemsize (read + write), ~1 µs per 1k tokens of 8x128 bf16 heads at 3 TB/s.
- `paged_decode`: one query per sequence. A program serves all query heads of one KV head (K/V read once
  per group) over one chunk of the context; with split-KV several programs share a long context and a
  reduce kernel merges their partial outputs by logsumexp. Memory bound: bytes ≈ 2·L·Hkv·D·itemsize per
  sequence of L cached tokens (batch 64, L=4k, 8 KV heads, D=128, bf16: 1.07 GB, ~0.36 ms at 3 TB/s);
  FLOPs 4·L·Hq·D are negligible.
- `paged_prefill`: packed new tokens [T, Hq, D] (cu_seqlens_q) attend causally over their sequence's whole
  cache (cached prefix + the new chunk, already written by `reshape_and_cache`); query i of a chunk of n
  sits at position seq_len - n + i. FLOPs as causal flash attention with Sk > S: 4·n·(L - n/2)·D per head.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from heartfast.kernels.autotune import configs, prune, tuned
from heartfast.kernels.flash_attention import (LOG2E, MAX_HEAD_DIM, _load_tile, _online_softmax_step,
                                               _visible_key_ranges)

SPLIT_CHUNK_ALIGN = 128  # split-KV chunks are multiples of every decode BLOCK_N candidate
MIN_SPLIT_TOKENS = 256  # below this many tokens per chunk a split costs more than it hides


def _decode_configs() -> list[triton.Config]:
    shapes = [(128, 4, 2), (64, 4, 2), (64, 4, 3), (128, 8, 2), (32, 4, 3)]
    return configs([triton.Config({"BLOCK_N": n}, num_warps=w, num_stages=s) for n, w, s in shapes])


def _prefill_configs() -> list[triton.Config]:
    shapes = [(128, 64, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 4, 3), (64, 32, 4, 2)]
    return configs([triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes])


@triton.jit
def _reshape_and_cache_kernel(K, V, KC, VC, SLOTS, block_size, kv_heads,
                              stride_kt, stride_kh, stride_vt, stride_vh,
                              stride_kcb, stride_kcs, stride_kch, stride_vcb, stride_vcs, stride_vch,
                              HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    token = tl.program_id(0)
    slot = tl.load(SLOTS + token).to(tl.int64)
    if slot < 0:
        return
    block = slot // block_size
    offset = slot % block_size
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h < kv_heads)[:, None] & (offs_d < HEAD_DIM)[None, :]
    k = tl.load(K + token.to(tl.int64) * stride_kt + offs_h[:, None] * stride_kh + offs_d[None, :], mask=mask)
    v = tl.load(V + token.to(tl.int64) * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :], mask=mask)
    tl.store(KC + block * stride_kcb + offset * stride_kcs + offs_h[:, None] * stride_kch + offs_d[None, :],
             k.to(KC.dtype.element_ty), mask=mask)
    tl.store(VC + block * stride_vcb + offset * stride_vcs + offs_h[:, None] * stride_vch + offs_d[None, :],
             v.to(VC.dtype.element_ty), mask=mask)


@triton.jit
def _paged_loop(acc, l_i, m_i, q, KC_head, VC_head, BT_row, block_size, stride_kcb, stride_kcs, stride_vcb,
                stride_vcs, offs_m, offs_d, d_mask, lo, hi, end, shift, qk_scale,
                BLOCK_N: tl.constexpr, MASK_SCORES: tl.constexpr, CAUSAL: tl.constexpr, EVEN_D: tl.constexpr,
                PRECISION: tl.constexpr):
    """Online softmax of query tile q over cached positions [lo, hi) (positions >= end are masked).

    MASK_SCORES off: every position of [lo, hi) is cached and visible, so loads and scores go unmasked.
    """
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        if MASK_SCORES:
            block = tl.load(BT_row + offs_n // block_size, mask=n_mask, other=0).to(tl.int64)
        else:
            block = tl.load(BT_row + offs_n // block_size).to(tl.int64)
        within = offs_n % block_size
        k_rows = block * stride_kcb + within * stride_kcs
        v_rows = block * stride_vcb + within * stride_vcs
        kt = _load_tile(KC_head + k_rows[None, :] + offs_d[:, None], d_mask, n_mask, not EVEN_D, MASK_SCORES)
        qk = tl.dot(q, kt.to(q.dtype), input_precision=PRECISION) * qk_scale
        if MASK_SCORES:
            valid = n_mask[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= offs_m[:, None] + shift)
            qk = tl.where(valid, qk, float("-inf"))
        v = _load_tile(VC_head + v_rows[:, None] + offs_d[None, :], n_mask, d_mask, MASK_SCORES, not EVEN_D)
        acc, l_i, m_i = _online_softmax_step(acc, l_i, m_i, qk, v.to(q.dtype), PRECISION)
    return acc, l_i, m_i


@tuned
@triton.autotune(configs=_decode_configs(), key=["HEAD_DIM", "GROUP", "SPLIT"],
                 prune_configs_by={"early_config_prune": prune})
@triton.jit
def _paged_decode_kernel(Q, KC, VC, BT, SEQ_LENS, O, PART_O, PART_LSE, qk_scale, block_size, chunk,
                         stride_qb, stride_qh, stride_kcb, stride_kcs, stride_kch, stride_vcb, stride_vcs, stride_vch,
                         stride_btb, stride_ob, stride_oh, stride_pob, stride_poh, stride_pos, stride_plb, stride_plh,
                         GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
                         BLOCK_G: tl.constexpr, SPLIT: tl.constexpr, PRECISION: tl.constexpr, BLOCK_N: tl.constexpr):
    off_b = tl.program_id(0)
    off_kh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(SEQ_LENS + off_b)
    start = split * chunk
    end = tl.minimum(start + chunk, seq_len)
    if SPLIT:
        if start >= end:  # the reduce kernel ignores chunks past the end of this sequence
            return
    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    g_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    heads = off_kh * GROUP + offs_g
    tile_mask = g_mask[:, None] & d_mask[None, :]
    off_b64 = off_b.to(tl.int64)
    q = tl.load(Q + off_b64 * stride_qb + heads[:, None] * stride_qh + offs_d[None, :], mask=tile_mask, other=0.0)

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    full_end = start + tl.maximum(end - start, 0) // BLOCK_N * BLOCK_N
    KC_head = KC + off_kh * stride_kch
    VC_head = VC + off_kh * stride_vch
    BT_row = BT + off_b64 * stride_btb
    acc, l_i, m_i = _paged_loop(acc, l_i, m_i, q, KC_head, VC_head, BT_row, block_size, stride_kcb, stride_kcs,
                                stride_vcb, stride_vcs, offs_g, offs_d, d_mask, start, full_end, end, 0, qk_scale,
                                BLOCK_N, False, False, EVEN_D, PRECISION)
    acc, l_i, m_i = _paged_loop(acc, l_i, m_i, q, KC_head, VC_head, BT_row, block_size, stride_kcb, stride_kcs,
                                stride_vcb, stride_vcs, offs_g, offs_d, d_mask, full_end, end, end, 0, qk_scale,
                                BLOCK_N, True, False, EVEN_D, PRECISION)
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    if SPLIT:
        base = off_b64 * stride_pob + heads * stride_poh + split * stride_pos
        tl.store(PART_O + base[:, None] + offs_d[None, :], out, mask=tile_mask)
        lse = (m_i + tl.log2(l_safe)) / 1.4426950408889634
        tl.store(PART_LSE + off_b64 * stride_plb + heads * stride_plh + split, lse, mask=g_mask)
    else:
        tl.store(O + off_b64 * stride_ob + heads[:, None] * stride_oh + offs_d[None, :], out.to(O.dtype.element_ty),
                 mask=tile_mask)


@triton.jit
def _split_reduce_kernel(PART_O, PART_LSE, O, SEQ_LENS, chunk, num_splits, stride_pob, stride_poh, stride_pos,
                         stride_plb, stride_plh, stride_ob, stride_oh,
                         HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
    """Merge the split-KV partial outputs of one (sequence, head): weights exp(lse_s - max lse)."""
    off_b = tl.program_id(0).to(tl.int64)
    off_h = tl.program_id(1)
    seq_len = tl.load(SEQ_LENS + off_b)
    used = tl.minimum((seq_len + chunk - 1) // chunk, num_splits)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < used
    lse = tl.load(PART_LSE + off_b * stride_plb + off_h * stride_plh + offs_s, mask=s_mask, other=float("-inf"))
    top = tl.max(lse, 0)
    top = tl.where(top == float("-inf"), 0.0, top)
    weight = tl.where(s_mask, tl.exp(lse - top), 0.0)
    part = tl.load(PART_O + off_b * stride_pob + off_h * stride_poh + offs_s[:, None] * stride_pos + offs_d[None, :],
                   mask=s_mask[:, None] & (offs_d < HEAD_DIM)[None, :], other=0.0)
    total = tl.sum(weight, 0)
    out = tl.sum(part * weight[:, None], 0) / tl.where(total > 0, total, 1.0)
    tl.store(O + off_b * stride_ob + off_h * stride_oh + offs_d, out.to(O.dtype.element_ty), mask=offs_d < HEAD_DIM)


@tuned
@triton.autotune(configs=_prefill_configs(), key=["HEAD_DIM", "GROUP"],
                 prune_configs_by={"early_config_prune": prune})
@triton.jit
def _paged_prefill_kernel(Q, KC, VC, BT, CU_Q, SEQ_LENS, O, qk_scale, block_size, num_heads,
                          stride_qt, stride_qh, stride_kcb, stride_kcs, stride_kch, stride_vcb, stride_vcs, stride_vch,
                          stride_btb, stride_ot, stride_oh,
                          GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
                          PRECISION: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    start_m = tl.num_programs(0) - 1 - tl.program_id(0)  # heaviest query blocks first
    off_bh = tl.program_id(1)
    off_b = off_bh // num_heads
    off_h = off_bh % num_heads
    q_start = tl.load(CU_Q + off_b)
    len_q = tl.load(CU_Q + off_b + 1) - q_start
    len_k = tl.load(SEQ_LENS + off_b)
    if start_m * BLOCK_M >= len_q:
        return
    off_kh = off_h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < len_q
    d_mask = offs_d < HEAD_DIM
    tile_mask = m_mask[:, None] & d_mask[None, :]
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + q_rows[:, None] * stride_qt + off_h * stride_qh + offs_d[None, :], mask=tile_mask, other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    shift = len_k - len_q
    full_end, hi = _visible_key_ranges(start_m, len_q, len_k, BLOCK_M, BLOCK_N, True)
    KC_head = KC + off_kh * stride_kch
    VC_head = VC + off_kh * stride_vch
    BT_row = BT + off_b.to(tl.int64) * stride_btb
    acc, l_i, m_i = _paged_loop(acc, l_i, m_i, q, KC_head, VC_head, BT_row, block_size, stride_kcb, stride_kcs,
                                stride_vcb, stride_vcs, offs_m, offs_d, d_mask, 0, full_end, len_k, shift, qk_scale,
                                BLOCK_N, False, True, EVEN_D, PRECISION)
    acc, l_i, m_i = _paged_loop(acc, l_i, m_i, q, KC_head, VC_head, BT_row, block_size, stride_kcb, stride_kcs,
                                stride_vcb, stride_vcs, offs_m, offs_d, d_mask, full_end, hi, len_k, shift, qk_scale,
                                BLOCK_N, True, True, EVEN_D, PRECISION)
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(O + q_rows[:, None] * stride_ot + off_h * stride_oh + offs_d[None, :], out.to(O.dtype.element_ty),
             mask=tile_mask)


def _check_cache(q: torch.Tensor, k_cache: torch.Tensor) -> tuple[int, int, int]:
    """(group, head_dim, padded block dim) after checking that q and the cache agree."""
    heads, head_dim = q.shape[-2], q.shape[-1]
    kv_heads = k_cache.shape[2]
    if k_cache.dim() != 4 or k_cache.shape[3] != head_dim or heads % kv_heads:
        raise ValueError(f"cache {tuple(k_cache.shape)} does not fit queries with {heads} heads of dim {head_dim}: "
                         "expected [num_blocks, block_size, Hkv, D] with Hq % Hkv == 0")
    if head_dim > MAX_HEAD_DIM:
        raise ValueError(f"head dim {head_dim} > {MAX_HEAD_DIM} is not supported by the Triton kernel")
    return heads // kv_heads, head_dim, max(16, triton.next_power_of_2(head_dim))


def _precision(q: torch.Tensor) -> str:
    return "ieee" if q.dtype == torch.float32 else "tf32"


def reshape_and_cache(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                      slot_mapping: torch.Tensor) -> None:
    """Write k/v [T, Hkv, D] into the caches at slot_mapping [T] (block * block_size + offset; -1 skips)."""
    k = k if k.stride(-1) == 1 else k.contiguous()
    v = v if v.stride(-1) == 1 else v.contiguous()
    tokens, kv_heads, head_dim = k.shape
    if tokens == 0:
        return
    _reshape_and_cache_kernel[(tokens,)](
        k, v, k_cache, v_cache, slot_mapping, k_cache.shape[1], kv_heads, k.stride(0), k.stride(1), v.stride(0),
        v.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), v_cache.stride(0), v_cache.stride(1),
        v_cache.stride(2), HEAD_DIM=head_dim, BLOCK_H=triton.next_power_of_2(kv_heads),
        BLOCK_D=triton.next_power_of_2(head_dim))


def multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132


def choose_num_splits(batch: int, kv_heads: int, max_context: int, multiprocessors: int) -> int:
    """Split the context only while batch x KV heads leaves SMs idle; aim at two programs per SM (enough
    loads in flight to stream the cache at full bandwidth) with every chunk at least MIN_SPLIT_TOKENS long."""
    programs = batch * kv_heads
    if programs >= multiprocessors:
        return 1
    return max(1, min(triton.cdiv(2 * multiprocessors, programs), max_context // MIN_SPLIT_TOKENS, 64))


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                 seq_lens: torch.Tensor, scale: float | None = None, *, num_splits: int | None = None,
                 max_seq_len: int | None = None) -> torch.Tensor:
    """One decode step: q [B, Hq, D] attends to its sequence's seq_lens[b] cached tokens -> [B, Hq, D].

    `num_splits` None picks split-KV automatically; `max_seq_len` bounds the context (default: the
    block table's capacity, which needs no device sync).
    """
    group, head_dim, block_d = _check_cache(q, k_cache)
    q = q if q.stride(-1) == 1 else q.contiguous()
    batch, heads = q.shape[0], q.shape[1]
    kv_heads, block_size = k_cache.shape[2], k_cache.shape[1]
    scale = float(scale) if scale is not None else 1.0 / math.sqrt(head_dim)
    capacity = max_seq_len if max_seq_len is not None else block_tables.shape[1] * block_size
    if num_splits is None:
        num_splits = choose_num_splits(batch, kv_heads, capacity, multiprocessors(q.device))
    chunk = triton.cdiv(triton.cdiv(max(capacity, 1), num_splits), SPLIT_CHUNK_ALIGN) * SPLIT_CHUNK_ALIGN
    num_splits = triton.cdiv(max(capacity, 1), chunk)
    out = torch.empty_like(q)
    split = num_splits > 1
    if split:
        part_o = torch.empty(batch, heads, num_splits, head_dim, dtype=torch.float32, device=q.device)
        part_lse = torch.empty(batch, heads, num_splits, dtype=torch.float32, device=q.device)
    else:
        part_o = part_lse = out  # unused when SPLIT is off
        chunk = max(capacity, 1)
    _paged_decode_kernel[(batch, kv_heads, num_splits)](
        q, k_cache, v_cache, block_tables, seq_lens, out, part_o, part_lse, scale * LOG2E, block_size, chunk,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), v_cache.stride(0),
        v_cache.stride(1), v_cache.stride(2), block_tables.stride(0), out.stride(0), out.stride(1),
        part_o.stride(0), part_o.stride(1), part_o.stride(2) if split else 0, part_lse.stride(0),
        part_lse.stride(1), GROUP=group, HEAD_DIM=head_dim, BLOCK_D=block_d, EVEN_D=head_dim == block_d,
        BLOCK_G=max(16, triton.next_power_of_2(group)), SPLIT=split, PRECISION=_precision(q))
    if split:
        _split_reduce_kernel[(batch, heads)](
            part_o, part_lse, out, seq_lens, chunk, num_splits, part_o.stride(0), part_o.stride(1),
            part_o.stride(2), part_lse.stride(0), part_lse.stride(1), out.stride(0), out.stride(1),
            HEAD_DIM=head_dim, BLOCK_D=block_d, BLOCK_S=triton.next_power_of_2(num_splits))
    return out


def paged_prefill(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                  cu_seqlens_q: torch.Tensor, seq_lens: torch.Tensor, scale: float | None = None, *,
                  max_seqlen_q: int) -> torch.Tensor:
    """Packed new tokens q [T, Hq, D] attend causally over cached prefix + themselves -> [T, Hq, D]."""
    group, head_dim, block_d = _check_cache(q, k_cache)
    q = q if q.stride(-1) == 1 else q.contiguous()
    heads = q.shape[1]
    batch = cu_seqlens_q.numel() - 1
    scale = float(scale) if scale is not None else 1.0 / math.sqrt(head_dim)
    out = torch.empty_like(q)
    grid = lambda meta: (triton.cdiv(max(max_seqlen_q, 1), meta["BLOCK_M"]), batch * heads)  # noqa: E731
    _paged_prefill_kernel[grid](
        q, k_cache, v_cache, block_tables, cu_seqlens_q, seq_lens, out, scale * LOG2E, k_cache.shape[1], heads,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), v_cache.stride(0),
        v_cache.stride(1), v_cache.stride(2), block_tables.stride(0), out.stride(0), out.stride(1),
        GROUP=group, HEAD_DIM=head_dim, BLOCK_D=block_d, EVEN_D=head_dim == block_d, PRECISION=_precision(q))
    return out
