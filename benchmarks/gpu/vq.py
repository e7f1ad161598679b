"""GPU checks and timings of the fused residual-VQ kernel (heartfast.kernels.vq via heartfast.ops.vq).

Checks (fp32/fp16/bf16, odd N, K, D): chosen-code distances against the fp32 reference (ties may pick
another index), quantized + residual = x, and the EMA statistics on rows where both chose alike.
Timings, Beat's setting (2 residual levels, one shared codebook), D = 128, K = 512 and 1024,
N = 16k ... 1M, fp32 and bf16: heartfast vs torch cdist + argmin, the matmul form ||c||^2 - 2 x.c eager
and under torch.compile, and vector-quantize-pytorch's ResidualVQ; peak memory of each in extra.
Training step: `vq_ema_stats` vs the eager one-hot reference (cdist + argmin, one_hot.T @ x, counts).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from heartfast.kernels.autotune import first_config_only
from heartfast.ops.vq import vq_assign, vq_ema_stats, vq_reference

LEVELS = 2
DIM = 128


def _chosen_distance(x: torch.Tensor, book: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    r = x.double()
    out = []
    for level in range(indices.shape[1]):
        code = book.double()[indices[:, level]]
        out.append(((r - code) ** 2).sum(1))
        r = r - code
    return torch.stack(out, 1)


def _checks(suite) -> None:
    torch.manual_seed(0)
    dtypes = ((torch.float32, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 1e-2))
    for dtype, tol in dtypes[2:] if suite.quick else dtypes:   # --quick: see attention._check_dtypes
        for n, k, d in ((1000 + 7, 509, 128), (4099, 1000, 37), (33, 77, 200)):
            name = f"vq assign {str(dtype)[6:]} N={n} K={k} D={d}"
            x = torch.randn(n, d, device="cuda").to(dtype)
            book = torch.randn(k, d, device="cuda")
            got = vq_assign(x, book, LEVELS, backend="triton")
            ref = vq_reference(x.float(), book, LEVELS)
            suite.check(name + " chosen distance", _chosen_distance(x.float(), book, got.indices),
                        _chosen_distance(x.float(), book, ref.indices), tol)
            suite.check(name + " quantized+residual=x", got.quantized.float() + got.residual.float(), x.float(),
                        tol)
            if dtype == torch.float32:
                suite.check(name + " quantized", got.quantized, ref.quantized, tol)
                same = (got.indices == ref.indices).all(1)
                stats = vq_ema_stats(x[same], book, LEVELS, backend="triton")
                ref_stats = vq_reference(x[same], book, LEVELS, stats=True)
                suite.check(name + " EMA counts", stats.counts, ref_stats.counts, tol)
                suite.check(name + " EMA sums", stats.sums, ref_stats.sums, tol)
                suite.check(name + " squared error", stats.sq_error, ref_stats.sq_error, tol)


def _cdist_argmin(x: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    r, codes = x, []
    for _ in range(LEVELS):
        idx = torch.cdist(r, book).argmin(1)
        r = r - book[idx]
        codes.append(idx)
    return torch.stack(codes, 1)


def _matmul_argmin(x: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    r, codes = x, []
    norms = (book.float() ** 2).sum(1)
    for _ in range(LEVELS):
        idx = (norms - 2 * (r @ book.T).float()).argmin(1)
        r = r - book[idx]
        codes.append(idx)
    return torch.stack(codes, 1)


def _eager_train_step(x: torch.Tensor, book: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The usual EMA-VQ statistics: one-hot assignment matrix, counts and sums by matmul."""
    r, counts, sums, errors = x.float(), [], [], []
    for _ in range(LEVELS):
        idx = torch.cdist(r, book).argmin(1)
        onehot = F.one_hot(idx, book.shape[0]).float()
        counts.append(onehot.sum(0))
        sums.append(onehot.T @ r)
        chosen = book[idx]
        errors.append(((r - chosen) ** 2).sum())
        r = r - chosen
    return torch.stack(counts), torch.stack(sums), torch.stack(errors)


def _peak_mib(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - base) / 2 ** 20, 1)


def _time(suite, case: str, impl: str, fn: Callable[[], object], flops: float, nbytes: float) -> None:
    try:
        peak = _peak_mib(fn)
    except Exception as exc:  # recorded by suite.time below as well
        peak = f"failed: {type(exc).__name__}"
    suite.time(case, impl, fn, flops=flops, bytes=nbytes, peak_mib=peak)


def _timings(suite) -> None:
    sizes = (16_384, 262_144) if suite.quick else (16_384, 131_072, 1_048_576)
    # One static-shape graph per case (12 cases): above dynamo's default of 8 it would fall back to eager.
    torch._dynamo.config.recompile_limit = 64
    compiled = torch.compile(_matmul_argmin, dynamic=False)
    try:
        from vector_quantize_pytorch import ResidualVQ
    except ImportError:
        ResidualVQ = None
    for dtype in (torch.float32, torch.bfloat16):
        size = torch.finfo(dtype).bits // 8
        for k in (512, 1024):
            book = torch.randn(k, DIM, device="cuda")
            book_cast = book.to(dtype)
            for n in sizes:
                x = torch.randn(n, DIM, device="cuda").to(dtype)
                case = f"rvq assign L=2 N={n} K={k} D={DIM} {str(dtype)[6:]}"
                flops = 2.0 * n * k * DIM * LEVELS
                nbytes = 3.0 * n * DIM * size + 8.0 * n * LEVELS + 4.0 * k * DIM
                _time(suite, case, "heartfast triton", lambda: vq_assign(x, book, LEVELS), flops, nbytes)
                if dtype == torch.float32:
                    _time(suite, case, "heartfast triton tf32",
                          lambda: vq_assign(x, book, LEVELS, allow_tf32=True), flops, nbytes)
                _time(suite, case, "torch cdist+argmin", lambda: _cdist_argmin(x, book_cast), flops, nbytes)
                _time(suite, case, "torch matmul form eager", lambda: _matmul_argmin(x, book_cast), flops, nbytes)
                _time(suite, case, "torch matmul form compiled", lambda: compiled(x, book_cast), flops, nbytes)
                if ResidualVQ is not None:
                    vq = ResidualVQ(dim=DIM, codebook_size=k, num_quantizers=LEVELS, shared_codebook=True,
                                    kmeans_init=False).to("cuda").eval()
                    with torch.no_grad():
                        _time(suite, case, "vector-quantize-pytorch ResidualVQ",
                              lambda: vq(x.float()[None]), flops, nbytes)
                if dtype == torch.float32:
                    train_case = f"rvq train step (EMA stats) L=2 N={n} K={k} D={DIM} fp32"
                    train_bytes = nbytes + 4.0 * LEVELS * k * (DIM + 1)
                    _time(suite, train_case, "heartfast triton", lambda: vq_ema_stats(x, book, LEVELS), flops,
                          train_bytes)
                    _time(suite, train_case, "torch eager one-hot", lambda: _eager_train_step(x, book), flops,
                          train_bytes)
                    _time(suite, train_case, "torch reference (chunked, index_add)",
                          lambda: vq_reference(x, book, LEVELS, stats=True), flops, train_bytes)
                del x
                torch.cuda.empty_cache()


def run(suite) -> None:
    with first_config_only():
        _checks(suite)
    _timings(suite)
