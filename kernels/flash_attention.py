"""Flash attention in Triton: forward and backward, causal or full, grouped-query, varlen packed sequences.

Layout (flash-attn's): dense q [B, S, Hq, D], k/v [B, Sk, Hkv, D]; or packed q [T, Hq, D], k/v [Tk, Hkv, D]
with int32 `cu_seqlens` (sequence b owns rows cu[b]:cu[b+1]; no attention across sequences). Hq % Hkv == 0:
query head h reads KV head h // (Hq // Hkv), so K/V are never repeated in memory. Causal with Sk > S aligns
the queries to the end of the keys (query i sees keys j <= i + Sk - S), as for a cached prefix + new chunk.
Head dims up to 128 (64, 96 via a padded, masked block of 128, 128); fp32 accumulation for any input dtype.

The forward keeps a running max and sum per query row (online softmax) so no S x Sk matrix reaches memory,
and saves the row logsumexp (natural log, fp32, laid out like the output rows: [B, S, Hq] or [T, Hq]). The
backward recomputes the probabilities from it: one kernel per KV block accumulates dK, dV over every query
head of its group (no atomics, deterministic), one kernel per query block accumulates dQ.

Cost per (batch, query head), full attention: forward 4·S·Sk·D FLOPs (QK^T and PV), half that causal;
backward 2.5x the forward (recompute QK^T, plus dV, dP, dQ, dK). Bytes: forward reads Q, K, V and writes O
(4·S·H·D·2 bytes at bf16, plus the fp32 logsumexp), so it is compute bound: on an H100 (~790 TFLOP/s bf16
dense) causal D=128, S=16k, 32 heads, batch 1 is 4·16k²·128·32/2 = 2.2 TFLOP, ~2.8 ms at the roofline, while
its 537 MB of traffic take ~0.18 ms at 3 TB/s.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from heartfast.kernels.autotune import configs, prune, tuned

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 128


# Candidates (BLOCK_M, BLOCK_N, warps, stages) for sm_90. The first is the interpreter's (big blocks keep
# programs few). Compiled offline for sm_90 (bf16, D=128): the ones kept here neither spill registers nor
# exceed 227 KB of shared memory at D=128, except where noted; at D=64 all fit.
def _fwd_configs() -> list[triton.Config]:
    shapes = [(128, 64, 4, 3),  # spills 168 B/thread at D=128; the D=64 candidate
              (128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2), (128, 128, 8, 3), (64, 64, 4, 3)]
    return configs([triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes])


def _bwd_kv_configs() -> list[triton.Config]:
    # dK and dV accumulate in registers next to the K/V tile: at D=128 only small BLOCK_M x BLOCK_N fit.
    shapes = [(64, 128, 8, 2),  # the D=64 candidate (spills at D=128)
              (32, 128, 8, 2), (32, 64, 8, 3), (16, 128, 8, 2), (64, 64, 4, 3)]
    return configs([triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes])


def _bwd_q_configs() -> list[triton.Config]:
    shapes = [(128, 64, 8, 2), (128, 32, 8, 2), (128, 64, 8, 3), (64, 64, 4, 3), (64, 32, 4, 3)]
    return configs([triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes])


@triton.jit
def _load_tile(ptrs, row_mask, col_mask, CHECK_ROWS: tl.constexpr, CHECK_COLS: tl.constexpr):
    """Load a 2-D tile, masking only the axes that can run out of bounds (unmasked loads vectorise best)."""
    if CHECK_ROWS:
        if CHECK_COLS:
            tile = tl.load(ptrs, mask=row_mask[:, None] & col_mask[None, :], other=0.0)
        else:
            tile = tl.load(ptrs, mask=row_mask[:, None], other=0.0)
    else:
        if CHECK_COLS:
            tile = tl.load(ptrs, mask=col_mask[None, :], other=0.0)
        else:
            tile = tl.load(ptrs)
    return tile


@triton.jit
def _sequence_bounds(CU_Q, CU_K, off_b, seqlen_q, seqlen_k, VARLEN: tl.constexpr):
    """(first row, length) of sequence `off_b` for queries and keys."""
    if VARLEN:
        q_start = tl.load(CU_Q + off_b)
        len_q = tl.load(CU_Q + off_b + 1) - q_start
        k_start = tl.load(CU_K + off_b)
        len_k = tl.load(CU_K + off_b + 1) - k_start
    else:
        q_start = off_b * 0
        len_q = seqlen_q
        k_start = off_b * 0
        len_k = seqlen_k
    return q_start, len_q, k_start, len_k


@triton.jit
def _visible_key_ranges(start_m, len_q, len_k, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """Keys [0, full_end) need no score mask for query block `start_m`; keys [full_end, hi) do."""
    if CAUSAL:
        shift = len_k - len_q
        hi = tl.minimum(len_k, (start_m + 1) * BLOCK_M + shift)
        full_end = tl.maximum(start_m * BLOCK_M + shift + 1, 0) // BLOCK_N * BLOCK_N
        full_end = tl.minimum(full_end, len_k // BLOCK_N * BLOCK_N)
    else:
        hi = len_k
        full_end = len_k // BLOCK_N * BLOCK_N
    return full_end, hi


@triton.jit
def _online_softmax_step(acc, l_i, m_i, qk, v, PRECISION: tl.constexpr):
    """Fold one key block into the running softmax: scores qk (log2 units, masked entries -inf) and values v."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    p = tl.exp2(qk - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, l_i * alpha + tl.sum(p, 1), m_new


@triton.jit
def _fwd_loop(acc, l_i, m_i, q, K_base, V_base, stride_ks, stride_vs, offs_m, offs_d, d_mask, lo, hi,
              len_k, shift, qk_scale, BLOCK_N: tl.constexpr, MASK_SCORES: tl.constexpr, CAUSAL: tl.constexpr,
              EVEN_D: tl.constexpr, PRECISION: tl.constexpr):
    """Online-softmax accumulation of query block q over keys [lo, hi) (scores in log2 units).

    MASK_SCORES off: every key of [lo, hi) is in bounds and visible, so loads and scores go unmasked.
    """
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < len_k
        kt = _load_tile(K_base + offs_n[None, :] * stride_ks + offs_d[:, None], d_mask, n_mask, not EVEN_D,
                        MASK_SCORES)
        qk = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        if MASK_SCORES:
            valid = n_mask[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= offs_m[:, None] + shift)
            qk = tl.where(valid, qk, float("-inf"))
        v = _load_tile(V_base + offs_n[:, None] * stride_vs + offs_d[None, :], n_mask, d_mask, MASK_SCORES,
                       not EVEN_D)
        acc, l_i, m_i = _online_softmax_step(acc, l_i, m_i, qk, v, PRECISION)
    return acc, l_i, m_i


@tuned
@triton.autotune(configs=_fwd_configs(), key=["HEAD_DIM", "CAUSAL", "VARLEN", "GROUP", "seq_bucket"],
                 prune_configs_by={"early_config_prune": prune})
@triton.jit
def _flash_fwd_kernel(Q, K, V, O, LSE, CU_Q, CU_K, qk_scale, seqlen_q, seqlen_k, seq_bucket, num_heads,
                      stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
                      stride_vb, stride_vs, stride_vh, stride_ob, stride_os, stride_oh,
                      stride_lb, stride_ls, stride_lh,
                      GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
                      CAUSAL: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    start_m = tl.program_id(0)
    if CAUSAL:  # heaviest query blocks first: better tail balance
        start_m = tl.num_programs(0) - 1 - start_m
    off_bh = tl.program_id(1)
    off_b = off_bh // num_heads
    off_h = off_bh % num_heads
    q_start, len_q, k_start, len_k = _sequence_bounds(CU_Q, CU_K, off_b, seqlen_q, seqlen_k, VARLEN)
    if start_m * BLOCK_M >= len_q:
        return
    off_b = off_b.to(tl.int64)
    off_kh = off_h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < len_q
    d_mask = offs_d < HEAD_DIM
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + off_b * stride_qb + off_h * stride_qh + q_rows[:, None] * stride_qs + offs_d[None, :],
                mask=m_mask[:, None] & d_mask[None, :], other=0.0)
    K_base = K + off_b * stride_kb + off_kh * stride_kh + k_start.to(tl.int64) * stride_ks
    V_base = V + off_b * stride_vb + off_kh * stride_vh + k_start.to(tl.int64) * stride_vs

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    shift = len_k - len_q
    full_end, hi = _visible_key_ranges(start_m, len_q, len_k, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _fwd_loop(acc, l_i, m_i, q, K_base, V_base, stride_ks, stride_vs, offs_m, offs_d, d_mask,
                              0, full_end, len_k, shift, qk_scale, BLOCK_N, False, CAUSAL, EVEN_D, PRECISION)
    acc, l_i, m_i = _fwd_loop(acc, l_i, m_i, q, K_base, V_base, stride_ks, stride_vs, offs_m, offs_d, d_mask,
                              full_end, hi, len_k, shift, qk_scale, BLOCK_N, True, CAUSAL, EVEN_D, PRECISION)

    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(O + off_b * stride_ob + off_h * stride_oh + q_rows[:, None] * stride_os + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=m_mask[:, None] & d_mask[None, :])
    lse = (m_i + tl.log2(l_safe)) / 1.4426950408889634
    tl.store(LSE + off_b * stride_lb + off_h * stride_lh + q_rows * stride_ls, lse, mask=m_mask)


@triton.jit
def _row_dot_kernel(O, DO, DELTA, rows, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_R: tl.constexpr):
    """delta[r] = sum_d O[r, d] * dO[r, d] (fp32): the softmax-backward correction term per query row."""
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_r < rows)[:, None] & (offs_d < HEAD_DIM)[None, :]
    ptrs = offs_r.to(tl.int64)[:, None] * HEAD_DIM + offs_d[None, :]
    o = tl.load(O + ptrs, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + offs_r, tl.sum(o * do, 1), mask=offs_r < rows)


@triton.jit
def _bwd_kv_loop(dk, dv, k, v, Q_base, DO_base, LSE_base, DELTA_base, stride_qs, stride_dos, stride_ls,
                 offs_n, offs_d, d_mask, lo, hi, len_q, shift, qk_scale,
                 BLOCK_M: tl.constexpr, MASK_SCORES: tl.constexpr, EVEN_D: tl.constexpr, PRECISION: tl.constexpr):
    """Accumulate dK, dV of one KV block over query rows [lo, hi) of one query head (transposed scores).

    Rows past len_q load as zeros (q, dO, lse, delta), which makes their contribution exactly zero.
    """
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_mask = offs_m < len_q
        rows = offs_m.to(tl.int64)
        qt = _load_tile(Q_base + rows[None, :] * stride_qs + offs_d[:, None], d_mask, m_mask, not EVEN_D, True)
        lse = tl.load(LSE_base + rows * stride_ls, mask=m_mask, other=0.0) * 1.4426950408889634
        pt = tl.exp2(tl.dot(k, qt, input_precision=PRECISION) * qk_scale - lse[None, :])
        if MASK_SCORES:  # causal diagonal: key n is visible to query m when n <= m + shift
            pt = tl.where((offs_n[:, None] <= offs_m[None, :] + shift) & m_mask[None, :], pt, 0.0)
        do = _load_tile(DO_base + rows[:, None] * stride_dos + offs_d[None, :], m_mask, d_mask, True, not EVEN_D)
        dv += tl.dot(pt.to(do.dtype), do, input_precision=PRECISION)
        delta = tl.load(DELTA_base + rows * stride_ls, mask=m_mask, other=0.0)
        dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)
        dst = pt * (dpt - delta[None, :])
        dk += tl.dot(dst.to(qt.dtype), tl.trans(qt), input_precision=PRECISION)
    return dk, dv


@tuned
@triton.autotune(configs=_bwd_kv_configs(), key=["HEAD_DIM", "CAUSAL", "VARLEN", "GROUP", "seq_bucket"],
                 prune_configs_by={"early_config_prune": prune})
@triton.jit
def _flash_bwd_kv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, CU_Q, CU_K, qk_scale, sm_scale, seqlen_q, seqlen_k,
                         seq_bucket, num_kv_heads,
                         stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
                         stride_vb, stride_vs, stride_vh, stride_dob, stride_dos, stride_doh,
                         stride_lb, stride_ls, stride_lh,
                         stride_dkb, stride_dks, stride_dkh, stride_dvb, stride_dvs, stride_dvh,
                         GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
                         CAUSAL: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr):
    start_n = tl.program_id(0)
    off_bh = tl.program_id(1)
    off_b = off_bh // num_kv_heads
    off_kh = off_bh % num_kv_heads
    q_start, len_q, k_start, len_k = _sequence_bounds(CU_Q, CU_K, off_b, seqlen_q, seqlen_k, VARLEN)
    if start_n * BLOCK_N >= len_k:
        return
    off_b = off_b.to(tl.int64)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_mask = offs_n < len_k
    d_mask = offs_d < HEAD_DIM
    kv_mask = n_mask[:, None] & d_mask[None, :]
    k_rows = (k_start + offs_n).to(tl.int64)
    k = tl.load(K + off_b * stride_kb + off_kh * stride_kh + k_rows[:, None] * stride_ks + offs_d[None, :],
                mask=kv_mask, other=0.0)
    v = tl.load(V + off_b * stride_vb + off_kh * stride_vh + k_rows[:, None] * stride_vs + offs_d[None, :],
                mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)

    shift = len_k - len_q
    if CAUSAL:  # queries that see any key of this block, and those that see all of it
        lo = tl.maximum(start_n * BLOCK_N - shift, 0) // BLOCK_M * BLOCK_M
        full_start = tl.maximum((start_n + 1) * BLOCK_N - 1 - shift, 0)
        full_start = tl.minimum((full_start + BLOCK_M - 1) // BLOCK_M * BLOCK_M, len_q)
        full_start = tl.maximum(full_start, lo)
    else:
        lo = 0
        full_start = 0
    q_off = q_start.to(tl.int64)
    for g in range(GROUP):
        off_h = off_kh * GROUP + g
        Q_base = Q + off_b * stride_qb + off_h * stride_qh + q_off * stride_qs
        DO_base = DO + off_b * stride_dob + off_h * stride_doh + q_off * stride_dos
        LSE_base = LSE + off_b * stride_lb + off_h * stride_lh + q_off * stride_ls
        DELTA_base = DELTA + off_b * stride_lb + off_h * stride_lh + q_off * stride_ls
        dk, dv = _bwd_kv_loop(dk, dv, k, v, Q_base, DO_base, LSE_base, DELTA_base, stride_qs, stride_dos,
                              stride_ls, offs_n, offs_d, d_mask, lo, full_start, len_q, shift, qk_scale,
                              BLOCK_M, True, EVEN_D, PRECISION)
        dk, dv = _bwd_kv_loop(dk, dv, k, v, Q_base, DO_base, LSE_base, DELTA_base, stride_qs, stride_dos,
                              stride_ls, offs_n, offs_d, d_mask, full_start, len_q, len_q, shift, qk_scale,
                              BLOCK_M, False, EVEN_D, PRECISION)
    tl.store(DK + off_b * stride_dkb + off_kh * stride_dkh + k_rows[:, None] * stride_dks + offs_d[None, :],
             (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + off_b * stride_dvb + off_kh * stride_dvh + k_rows[:, None] * stride_dvs + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _bwd_q_loop(dq, q, do, lse, delta, K_base, V_base, stride_ks, stride_vs, offs_m, offs_d, d_mask, lo, hi,
                len_k, shift, qk_scale, BLOCK_N: tl.constexpr, MASK_SCORES: tl.constexpr, CAUSAL: tl.constexpr,
                EVEN_D: tl.constexpr, PRECISION: tl.constexpr):
    """Accumulate dQ of one query block over keys [lo, hi)."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < len_k
        kt = _load_tile(K_base + offs_n[None, :] * stride_ks + offs_d[:, None], d_mask, n_mask, not EVEN_D,
                        MASK_SCORES)
        vt = _load_tile(V_base + offs_n[None, :] * stride_vs + offs_d[:, None], d_mask, n_mask, not EVEN_D,
                        MASK_SCORES)
        p = tl.exp2(tl.dot(q, kt, input_precision=PRECISION) * qk_scale - lse[:, None])
        if MASK_SCORES:
            valid = n_mask[None, :]
            if CAUSAL:
                valid = valid & (offs_n[None, :] <= offs_m[:, None] + shift)
            p = tl.where(valid, p, 0.0)
        dp = tl.dot(do, vt, input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=PRECISION)
    return dq


@tuned
@triton.autotune(configs=_bwd_q_configs(), key=["HEAD_DIM", "CAUSAL", "VARLEN", "GROUP", "seq_bucket"],
                 prune_configs_by={"early_config_prune": prune})
@triton.jit
def _flash_bwd_q_kernel(Q, K, V, DO, LSE, DELTA, DQ, CU_Q, CU_K, qk_scale, sm_scale, seqlen_q, seqlen_k,
                        seq_bucket, num_heads,
                        stride_qb, stride_qs, stride_qh, stride_kb, stride_ks, stride_kh,
                        stride_vb, stride_vs, stride_vh, stride_dob, stride_dos, stride_doh,
                        stride_lb, stride_ls, stride_lh, stride_dqb, stride_dqs, stride_dqh,
                        GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr,
                        CAUSAL: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_N: tl.constexpr):
    start_m = tl.program_id(0)
    if CAUSAL:
        start_m = tl.num_programs(0) - 1 - start_m
    off_bh = tl.program_id(1)
    off_b = off_bh // num_heads
    off_h = off_bh % num_heads
    q_start, len_q, k_start, len_k = _sequence_bounds(CU_Q, CU_K, off_b, seqlen_q, seqlen_k, VARLEN)
    if start_m * BLOCK_M >= len_q:
        return
    off_b = off_b.to(tl.int64)
    off_kh = off_h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_mask = offs_m < len_q
    d_mask = offs_d < HEAD_DIM
    tile_mask = m_mask[:, None] & d_mask[None, :]
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + off_b * stride_qb + off_h * stride_qh + q_rows[:, None] * stride_qs + offs_d[None, :],
                mask=tile_mask, other=0.0)
    do = tl.load(DO + off_b * stride_dob + off_h * stride_doh + q_rows[:, None] * stride_dos + offs_d[None, :],
                 mask=tile_mask, other=0.0)
    row_off = off_b * stride_lb + off_h * stride_lh + q_rows * stride_ls
    lse = tl.load(LSE + row_off, mask=m_mask, other=0.0) * 1.4426950408889634
    delta = tl.load(DELTA + row_off, mask=m_mask, other=0.0)
    K_base = K + off_b * stride_kb + off_kh * stride_kh + k_start.to(tl.int64) * stride_ks
    V_base = V + off_b * stride_vb + off_kh * stride_vh + k_start.to(tl.int64) * stride_vs

    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    shift = len_k - len_q
    full_end, hi = _visible_key_ranges(start_m, len_q, len_k, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _bwd_q_loop(dq, q, do, lse, delta, K_base, V_base, stride_ks, stride_vs, offs_m, offs_d, d_mask,
                     0, full_end, len_k, shift, qk_scale, BLOCK_N, False, CAUSAL, EVEN_D, PRECISION)
    dq = _bwd_q_loop(dq, q, do, lse, delta, K_base, V_base, stride_ks, stride_vs, offs_m, offs_d, d_mask,
                     full_end, hi, len_k, shift, qk_scale, BLOCK_N, True, CAUSAL, EVEN_D, PRECISION)
    tl.store(DQ + off_b * stride_dqb + off_h * stride_dqh + q_rows[:, None] * stride_dqs + offs_d[None, :],
             (dq * sm_scale).to(DQ.dtype.element_ty), mask=tile_mask)


def _rows_strides(x: torch.Tensor, varlen: bool) -> tuple[int, int, int]:
    """(batch, row, head) strides; packed varlen tensors have no batch axis (stride 0)."""
    return (0, x.stride(0), x.stride(1)) if varlen else (x.stride(0), x.stride(1), x.stride(2))


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


class _Problem:
    """Shapes, strides and launch constants shared by the forward and backward launches."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, causal: bool, scale: float | None,
                 cu_seqlens_q: torch.Tensor | None, cu_seqlens_k: torch.Tensor | None,
                 max_seqlen_q: int | None, max_seqlen_k: int | None) -> None:
        self.varlen = cu_seqlens_q is not None
        if self.varlen:
            if q.dim() != 3 or cu_seqlens_k is None or max_seqlen_q is None or max_seqlen_k is None:
                raise ValueError("varlen flash attention needs packed [T, H, D] tensors, both cu_seqlens and both "
                                 "max_seqlens")
            self.batch = cu_seqlens_q.numel() - 1
            self.seqlen_q, self.seqlen_k = int(max_seqlen_q), int(max_seqlen_k)
        else:
            if q.dim() != 4:
                raise ValueError(f"dense flash attention needs [B, S, H, D] tensors, got q of shape {tuple(q.shape)}")
            self.batch, self.seqlen_q, self.seqlen_k = q.shape[0], q.shape[1], k.shape[1]
        self.heads, self.kv_heads, self.head_dim = q.shape[-2], k.shape[-2], q.shape[-1]
        if self.heads % self.kv_heads:
            raise ValueError(f"query heads {self.heads} must be a multiple of KV heads {self.kv_heads}")
        if self.head_dim > MAX_HEAD_DIM:
            raise ValueError(f"head dim {self.head_dim} > {MAX_HEAD_DIM} is not supported by the Triton kernel")
        self.group = self.heads // self.kv_heads
        self.causal = causal
        self.scale = float(scale) if scale is not None else 1.0 / math.sqrt(self.head_dim)
        self.block_d = max(16, triton.next_power_of_2(self.head_dim))
        self.seq_bucket = triton.next_power_of_2(max(self.seqlen_q, self.seqlen_k))
        self.precision = "ieee" if q.dtype == torch.float32 else "tf32"
        dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
        self.cu_q = cu_seqlens_q if self.varlen else dummy
        self.cu_k = cu_seqlens_k if self.varlen else dummy

    def strides(self, x: torch.Tensor) -> tuple[int, int, int]:
        return _rows_strides(x, self.varlen)

    def constants(self) -> dict:
        return dict(GROUP=self.group, HEAD_DIM=self.head_dim, BLOCK_D=self.block_d,
                    EVEN_D=self.head_dim == self.block_d, CAUSAL=self.causal,
                    VARLEN=self.varlen, PRECISION=self.precision)


def _forward(p: _Problem, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    o = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # row-major: rows line up with the lse layout
    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
    grid = lambda meta: (triton.cdiv(p.seqlen_q, meta["BLOCK_M"]), p.batch * p.heads)  # noqa: E731
    lse_strides = (0, lse.stride(0), lse.stride(1)) if p.varlen else lse.stride()
    _flash_fwd_kernel[grid](q, k, v, o, lse, p.cu_q, p.cu_k, p.scale * LOG2E, p.seqlen_q, p.seqlen_k, p.seq_bucket,
                            p.heads, *p.strides(q), *p.strides(k), *p.strides(v), *p.strides(o), *lse_strides,
                            **p.constants())
    return o, lse


def _backward(p: _Problem, q, k, v, o, lse, do) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = o.numel() // p.head_dim
    delta = torch.empty_like(lse)
    block_r = 64
    _row_dot_kernel[(triton.cdiv(rows, block_r),)](o, do, delta, rows, HEAD_DIM=p.head_dim, BLOCK_D=p.block_d,
                                                  BLOCK_R=block_r)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    lse_strides = (0, lse.stride(0), lse.stride(1)) if p.varlen else lse.stride()
    common = (p.cu_q, p.cu_k, p.scale * LOG2E, p.scale, p.seqlen_q, p.seqlen_k, p.seq_bucket)
    kv_grid = lambda meta: (triton.cdiv(p.seqlen_k, meta["BLOCK_N"]), p.batch * p.kv_heads)  # noqa: E731
    _flash_bwd_kv_kernel[kv_grid](q, k, v, do, lse, delta, dk, dv, *common, p.kv_heads, *p.strides(q),
                                  *p.strides(k), *p.strides(v), *p.strides(do), *lse_strides, *p.strides(dk),
                                  *p.strides(dv), **p.constants())
    q_grid = lambda meta: (triton.cdiv(p.seqlen_q, meta["BLOCK_M"]), p.batch * p.heads)  # noqa: E731
    _flash_bwd_q_kernel[q_grid](q, k, v, do, lse, delta, dq, *common, p.heads, *p.strides(q), *p.strides(k),
                                *p.strides(v), *p.strides(do), *lse_strides, *p.strides(dq), **p.constants())
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: saves Q, K, V, O and the logsumexp; the backward recomputes the probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, causal, scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
        q, k, v = (_last_dim_contiguous(x) for x in (q, k, v))
        problem = _Problem(q, k, causal, scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
        o, lse = _forward(problem, q, k, v)
        ctx.problem = problem
        ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _backward(ctx.problem, q, k, v, o, lse, do.contiguous())
        return dq, dk, dv, None, None, None, None, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                    scale: float | None = None, cu_seqlens_q: torch.Tensor | None = None,
                    cu_seqlens_k: torch.Tensor | None = None, max_seqlen_q: int | None = None,
                    max_seqlen_k: int | None = None) -> torch.Tensor:
    """Differentiable flash attention; dense [B, S, H, D] or packed [T, H, D] with int32 cu_seqlens."""
    return FlashAttentionFunction.apply(q, k, v, causal, scale, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                        max_seqlen_k)

