"""Grouped projector layer for DSPA: both streams' layer in one launch, written straight into the embeddings.

One launch runs up to two Linear problems with different shapes (like a grouped GEMM: the program id picks
the problem's pointers and sizes) and optionally one row-wise LayerNorm problem:

    linear tile:  y = x @ W.T + b  [-> GELU]   x [M, K], W [N, K]
                  dense store to y [M, N] (intermediate layer), or scatter: element (m, n) goes to
                  embeds[rows[m * tokens + n // width], n % width] with width = N / tokens (final layer:
                  k tokens per input vector land at their placeholder rows; no torch.cat, no copy).
    norm tile:    LayerNorm over each row of h [M, H] (H = width of the embeddings), scattered to rows[m].

The LayerNorm variant (Heartcare's signal projector: Linear → GELU → LayerNorm(H)) cannot live in the GEMM
epilogue because an N tile (≤ 256 columns) never spans a row of H = 3072: the GELU output is stored once
and the next layer's launch normalises it in a light extra pass (three reads of each row, mostly from L2,
one write to the placeholder row) in programs scheduled first, alongside the other stream's GEMM tiles.

Cost at the issue's shape (64 ECGs; signal 1280 × 128 → H; image 768 × 1152 → 2H → 2H; H = 3072; bf16):
FLOPs 2·(1280·128·H + 768·1152·2H + 768·(2H)²) ≈ 70 GFLOP, 83% of it the image's second layer; bytes ≈
weights (2H·1152 + (2H)² + H·128)·2 ≈ 90 MB + activations (inputs, the two intermediate layers written and
read back, saved GELU inputs, 2816 output rows) ≈ 55 MB → H100 roofline ≈ 0.09 ms for the FLOPs (at ~790
TFLOP/s) vs 0.05 ms for the bytes: compute-bound. Eager PyTorch runs the same GEMMs (cuBLAS) plus six
elementwise / copy kernels (two GELUs, LayerNorm, reshape, cat, scatter) and their launches; the gain
available is that overhead (~15-25% here), and only if the Triton GEMM tiles keep pace with cuBLAS.
"""
from __future__ import annotations

import triton
import triton.language as tl

from heartfast.kernels.autotune import configs, prune, tuned

NORM_ROWS = 16  # rows per norm program: 1280 signal rows -> 80 programs that overlap the GEMM tiles

_CANDIDATES = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=4, num_stages=4),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 256, "BLOCK_K": 64}, num_warps=8, num_stages=3),
]


@triton.jit
def _gelu(a):
    return 0.5 * a * (1.0 + tl.math.erf(a * 0.7071067811865476))


@triton.jit
def _linear_tile(tile, x_ptr, w_ptr, b_ptr, pre_ptr, out_ptr, rows_ptr, M, N, K, width, tokens,
                 GELU: tl.constexpr, SCATTER: tl.constexpr, STORE_PRE: tl.constexpr, IEEE: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # M-fastest order: M is small (≤ a few thousand rows) and W large (up to (2H)² = 75 MB at H = 3072), so
    # the programs in flight share W's column tile and W streams from HBM about once; x stays in L2.
    n_tiles_m = tl.cdiv(M, BLOCK_M)
    pid_m = tile % n_tiles_m
    pid_n = tile // n_tiles_m
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + offs_k
        a = tl.load(x_ptr + offs_m[:, None].to(tl.int64) * K + kk[None, :],
                    mask=mask_m[:, None] & (kk[None, :] < K), other=0.0)
        b = tl.load(w_ptr + offs_n[None, :].to(tl.int64) * K + kk[:, None],
                    mask=mask_n[None, :] & (kk[:, None] < K), other=0.0)
        if IEEE:
            acc = tl.dot(a, b, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
    acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    dense = offs_m[:, None].to(tl.int64) * N + offs_n[None, :]
    if GELU:
        if STORE_PRE:
            tl.store(pre_ptr + dense, acc.to(pre_ptr.dtype.element_ty), mask=mask)
        acc = _gelu(acc)
    if SCATTER:
        slot = offs_m[:, None] * tokens + offs_n[None, :] // width
        dest = tl.load(rows_ptr + slot, mask=mask, other=0)
        tl.store(out_ptr + dest * width + offs_n[None, :] % width, acc.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(out_ptr + dense, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _norm_tile(tile, h_ptr, g_ptr, b_ptr, out_ptr, rows_ptr, mean_ptr, rstd_ptr, M, H, eps,
               STORE_STATS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    offs_m = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    base = offs_m[:, None].to(tl.int64) * H
    total = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for n0 in range(0, H, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        mask = mask_m[:, None] & (cols[None, :] < H)
        total += tl.sum(tl.load(h_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32), axis=1)
    mean = total / H
    sq = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for n0 in range(0, H, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        mask = mask_m[:, None] & (cols[None, :] < H)
        h = tl.load(h_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        d = tl.where(mask, h - mean[:, None], 0.0)
        sq += tl.sum(d * d, axis=1)
    rstd = 1.0 / tl.sqrt(sq / H + eps)
    if STORE_STATS:  # what the LayerNorm backward needs (fp32 [M] each)
        tl.store(mean_ptr + offs_m, mean, mask=mask_m)
        tl.store(rstd_ptr + offs_m, rstd, mask=mask_m)
    dest = tl.load(rows_ptr + offs_m, mask=mask_m, other=0)
    for n0 in range(0, H, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        mask = mask_m[:, None] & (cols[None, :] < H)
        h = tl.load(h_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + cols, mask=cols < H, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=cols < H, other=0.0).to(tl.float32)
        y = (h - mean[:, None]) * rstd[:, None] * g[None, :] + b[None, :]
        tl.store(out_ptr + dest[:, None] * H + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)


@tuned
@triton.autotune(configs=configs(_CANDIDATES),
                 key=["M0", "N0", "K0", "M1", "N1", "K1", "norm_M", "norm_H", "GELU0", "GELU1", "IEEE"],
                 prune_configs_by={"early_config_prune": prune})
@triton.jit
def _grouped_projection_kernel(
        x0, w0, b0, pre0, out0, rows0, M0, N0, K0, width0, tokens0,
        x1, w1, b1, pre1, out1, rows1, M1, N1, K1, width1, tokens1,
        norm_h, norm_g, norm_b, norm_out, norm_rows, norm_mean, norm_rstd, norm_M, norm_H, eps,
        GELU0: tl.constexpr, SCATTER0: tl.constexpr, GELU1: tl.constexpr, SCATTER1: tl.constexpr,
        HAS_NORM: tl.constexpr, STORE_PRE: tl.constexpr, IEEE: tl.constexpr, NORM_ROWS: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # Program order = longest work first: the norm rows (each loops over all of H), then the linear problems,
    # which the launcher sorts by K (descending).
    pid = tl.program_id(0)
    norm_tiles = tl.cdiv(norm_M, NORM_ROWS)
    tiles0 = tl.cdiv(M0, BLOCK_M) * tl.cdiv(N0, BLOCK_N)
    if pid < norm_tiles:
        if HAS_NORM:  # compiled only when a norm problem is present (its placeholder pointers are not int64 rows)
            _norm_tile(pid, norm_h, norm_g, norm_b, norm_out, norm_rows, norm_mean, norm_rstd,
                       norm_M, norm_H, eps, STORE_PRE, NORM_ROWS, BLOCK_N)
    elif pid < norm_tiles + tiles0:
        _linear_tile(pid - norm_tiles, x0, w0, b0, pre0, out0, rows0, M0, N0, K0, width0, tokens0,
                     GELU0, SCATTER0, STORE_PRE, IEEE, BLOCK_M, BLOCK_N, BLOCK_K)
    else:
        _linear_tile(pid - norm_tiles - tiles0, x1, w1, b1, pre1, out1, rows1, M1, N1, K1, width1, tokens1,
                     GELU1, SCATTER1, STORE_PRE, IEEE, BLOCK_M, BLOCK_N, BLOCK_K)


def grouped_projection_launch(linears: list[dict], norm: dict | None, store_pre: bool, ieee: bool = True) -> None:
    """One launch for up to two Linear problems and one LayerNorm problem (see the module docstring).

    Each linear dict: x [M, K], w [N, K], b [N], out (dense [M, N] or the [T, width] embeddings), rows
    (int64 [M * tokens] or None for a dense store), tokens, gelu, pre ([M, N] or None). The norm dict:
    h [M, H], g [H], b [H], out [T, H], rows int64 [M], eps, and with `store_pre` mean / rstd (fp32 [M]).
    With `store_pre` the launch also keeps what the backward needs: GELU inputs and LayerNorm statistics.
    `ieee`: exact fp32 dots (else TF32 for fp32 inputs; fp16/bf16 ignore it). The output buffers may have
    another float dtype than the inputs (the epilogue casts): fp32 embeddings filled by a bf16 projector.
    All tensors contiguous, same device.
    """
    if not 1 <= len(linears) + (norm is not None) <= 3 or len(linears) > 2:
        raise ValueError("a grouped launch takes one or two linear problems and at most one norm problem")
    linears = sorted(linears, key=lambda p: -p["x"].shape[1])  # longest K first (see the kernel)
    anchor = linears[0] if linears else {"x": norm["h"], "b": norm["b"], "out": norm["out"]}
    args = []
    for p in linears:
        m, k = p["x"].shape
        n = p["w"].shape[0]
        tokens = p.get("tokens", 1)
        pre = p["pre"] if p.get("pre") is not None else p["out"]
        rows = p["rows"] if p.get("rows") is not None else p["b"]
        args += [p["x"], p["w"], p["b"], pre, p["out"], rows, m, n, k, n // tokens, tokens]
    for _ in range(2 - len(linears)):  # an absent problem: zero rows, no tiles (real tensors as pointers)
        x, b, out = anchor["x"], anchor["b"], anchor["out"]
        args += [x, x, b, out, out, b, 0, 1, 1, 1, 1]
    if norm is not None:
        mean = norm["mean"] if store_pre else norm["b"]
        rstd = norm["rstd"] if store_pre else norm["b"]
        args += [norm["h"], norm["g"], norm["b"], norm["out"], norm["rows"], mean, rstd, norm["h"].shape[0],
                 norm["h"].shape[1], float(norm["eps"])]
    else:
        args += [anchor["x"], anchor["b"], anchor["b"], anchor["out"], anchor["b"], anchor["b"], anchor["b"], 0, 1,
                 1e-5]
    sizes = [(p["x"].shape[0], p["w"].shape[0]) for p in linears]

    def grid(meta: dict) -> tuple[int]:
        tiles = sum(triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]) for m, n in sizes)
        if norm is not None:
            tiles += triton.cdiv(norm["h"].shape[0], NORM_ROWS)
        return (tiles,)

    flags = [(bool(p.get("gelu")), p.get("rows") is not None) for p in linears] + [(False, False)] * 2
    _grouped_projection_kernel[grid](
        *args, GELU0=flags[0][0], SCATTER0=flags[0][1], GELU1=flags[1][0], SCATTER1=flags[1][1],
        HAS_NORM=norm is not None, STORE_PRE=store_pre, IEEE=ieee, NORM_ROWS=NORM_ROWS)

