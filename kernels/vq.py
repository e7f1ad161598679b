"""Residual vector quantization in one Triton launch: nearest-code assignment for every level, and
optionally the training statistics (EMA counts and sums, commitment error), without an N x K matrix.

Each program owns BLOCK_N rows. Their residual (D <= 512, padded to a power of two) stays in registers
for all levels. For one level it walks the codebook in BLOCK_K tiles, computing ||c||^2 - 2 r.c with
`tl.dot` and keeping a running (min, argmin) per row, so distances live only as one BLOCK_N x BLOCK_K
tile. The chosen code is gathered, added to the quantized sum and subtracted from the residual that the
next level quantizes. With TRAIN, the same pass adds each row's level input to its code's sum and a one to
its code's count (fp32 atomics; no one-hot) and writes per-program partial sums of ||r - c||^2.

Work for N rows, K codes of size D, L levels, inputs of s bytes per element:
  FLOPs  2*N*K*D*L for the distances (+ 2*K*D*L per program for the code norms, recomputed in-tile)
  bytes  N*D*s read + 2*N*D*s written (quantized, residual) + 8*N*L (indices) + K*D*4*L (codebook,
         read once from HBM, then from L2); TRAIN adds atomics on L*K*(D+1) fp32 values held in L2.
H100 roofline, N = 1M, K = 512, D = 128, L = 2, bf16: 268 GFLOP / ~790 TFLOP/s = 0.34 ms against
  ~0.8 GB / ~3 TB/s = 0.27 ms, so ~0.35 ms (compute-bound; fp32 inputs use exact fp32 dots by default,
  ~4.5 ms at ~60 TFLOP/s, or tf32 with `allow_tf32=True`).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from heartfast.kernels.autotune import configs, prune, tuned

MAX_DIM = 512  # the residual of BLOCK_N rows must fit in registers


@tuned
@triton.autotune(
    configs=configs([
        triton.Config({"BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4, num_stages=2),
        triton.Config({"BLOCK_N": 64, "BLOCK_K": 128}, num_warps=8, num_stages=2),
        triton.Config({"BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=2),
        triton.Config({"BLOCK_N": 128, "BLOCK_K": 128}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_N": 32, "BLOCK_K": 64}, num_warps=4, num_stages=3),
    ]),
    key=["K", "D", "LEVELS", "PER_LEVEL", "TRAIN"],
    reset_to_zero=["counts_ptr", "sums_ptr"],  # autotuning runs it several times; atomics restart
    prune_configs_by={"early_config_prune": prune},
)
@triton.jit
def _rvq_kernel(x_ptr, cb_ptr, idx_ptr, q_ptr, res_ptr, counts_ptr, sums_ptr, sqerr_ptr, N, K, D,
                LEVELS: tl.constexpr, PER_LEVEL: tl.constexpr, TRAIN: tl.constexpr,
                PRECISION: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    codes = tl.arange(0, BLOCK_K)
    row_ok = rows < N
    dim_ok = dims < D
    tile_ok = row_ok[:, None] & dim_ok[None, :]
    offsets = rows[:, None].to(tl.int64) * D + dims[None, :]

    x = tl.load(x_ptr + offsets, mask=tile_ok, other=0.0)
    residual = x.to(tl.float32)
    quantized = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for level in tl.static_range(LEVELS):
        if PER_LEVEL:
            book = cb_ptr + level * K * D
        else:
            book = cb_ptr
        lhs = residual.to(x.dtype)  # dot in the input precision, fp32 accumulation
        best = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
        best_idx = tl.zeros([BLOCK_N], dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + codes
            k_ok = ks < K
            c = tl.load(book + ks[:, None] * D + dims[None, :], mask=k_ok[:, None] & dim_ok[None, :],
                        other=0.0).to(tl.float32)
            norms = tl.sum(c * c, axis=1)
            dots = tl.dot(lhs, tl.trans(c.to(x.dtype)), input_precision=PRECISION)
            dist = tl.where(k_ok[None, :], norms[None, :] - 2.0 * dots, float("inf"))
            tile_best = tl.min(dist, axis=1)
            tile_idx = tl.argmin(dist, axis=1).to(tl.int32) + k0
            better = tile_best < best  # strict: ties keep the lower index, like torch.argmin
            best = tl.where(better, tile_best, best)
            best_idx = tl.where(better, tile_idx, best_idx)
        tl.store(idx_ptr + rows.to(tl.int64) * LEVELS + level, best_idx.to(tl.int64), mask=row_ok)
        chosen = tl.load(book + best_idx[:, None] * D + dims[None, :], mask=tile_ok, other=0.0).to(tl.float32)
        if TRAIN:
            slot = level * K + best_idx
            tl.atomic_add(counts_ptr + slot, tl.full([BLOCK_N], 1.0, tl.float32), mask=row_ok)
            tl.atomic_add(sums_ptr + slot[:, None].to(tl.int64) * D + dims[None, :], residual, mask=tile_ok)
        residual = residual - chosen
        quantized = quantized + chosen
        if TRAIN:
            tl.store(sqerr_ptr + pid * LEVELS + level, tl.sum(tl.sum(residual * residual, axis=1), axis=0))
    tl.store(q_ptr + offsets, quantized.to(q_ptr.dtype.element_ty), mask=tile_ok)
    tl.store(res_ptr + offsets, residual.to(res_ptr.dtype.element_ty), mask=tile_ok)


def rvq(x: torch.Tensor, codebooks: torch.Tensor, levels: int, *, train: bool = False,
        allow_tf32: bool = False) -> tuple[torch.Tensor, ...]:
    """Launch the fused residual VQ on x [N, D] with codebooks [Lc, K, D] (Lc = levels, or 1 = shared).

    Returns (indices [N, L] int64, quantized [N, D], residual [N, D]) in x's dtype; with `train` also
    (counts [L, K], sums [L, K, D], squared error [L]) in fp32, where sums add each row's level input.
    """
    n, d = x.shape
    book_levels, k, book_d = codebooks.shape
    if book_d != d:
        raise ValueError(f"vectors have {d} dims but codes have {book_d}")
    if d > MAX_DIM:
        raise ValueError(f"the fused VQ kernel keeps a row in registers and supports D <= {MAX_DIM}, got {d}")
    x = x.contiguous()
    codebooks = codebooks.contiguous()
    device = x.device
    indices = torch.empty(n, levels, dtype=torch.int64, device=device)
    quantized = torch.empty_like(x)
    residual = torch.empty_like(x)
    counts = torch.zeros(levels if train else 1, k if train else 1, dtype=torch.float32, device=device)
    sums = torch.zeros(levels if train else 1, k if train else 1, d if train else 1,
                       dtype=torch.float32, device=device)
    min_block_n = 32
    sqerr = torch.zeros(max(triton.cdiv(n, min_block_n), 1) if train else 1, levels, dtype=torch.float32,
                        device=device)
    # fp32: exact fp32 dots unless tf32 is allowed; fp16/bf16: the default tensor-core dot.
    precision = ("tf32" if allow_tf32 else "ieee") if x.dtype == torch.float32 else None
    block_d = max(16, triton.next_power_of_2(d))

    def grid(meta: dict) -> tuple[int]:
        return (triton.cdiv(n, meta["BLOCK_N"]),)

    _rvq_kernel[grid](x, codebooks, indices, quantized, residual, counts, sums, sqerr, n, k, d,
                      LEVELS=levels, PER_LEVEL=book_levels > 1, TRAIN=train, PRECISION=precision,
                      BLOCK_D=block_d)
    if not train:
        return indices, quantized, residual
    return indices, quantized, residual, counts, sums, sqerr.sum(0)
