"""GPU checks and timings for the attention path (kernels/flash_attention.py, kernels/paged_attention.py).

    python3 benchmarks/gpu_suite.py --only attention [--quick]

Checks (CUDA): forward + backward of the Triton flash attention against a float64 reference in fp32, fp16
and bf16 (GQA, D = 64/96/128, odd lengths, causal with Sk > S, varlen); paged decode with and without
split-KV, prefix prefill and cache writes against the torch reference.
Timings: forward and backward causal D=128 bf16, 32 heads, 16k tokens per batch (S = 1k..16k) against
SDPA's flash backend (FlashAttention-2's kernel), flash-attn and xformers where importable; decode at batch
1..128 with 1k..8k contexts (split-KV auto and off) against flash_attn_with_kvcache where importable and SDPA
over a pre-gathered dense cache; paged prefill of a chunk over a cached prefix against dense Triton attention.
"""
from __future__ import annotations

import torch

from heartfast.kernels import paged_attention as paged_kernels
from heartfast.kernels.autotune import first_config_only
from heartfast.kernels.flash_attention import flash_attention
from heartfast.ops.attention import attention, attention_reference
from heartfast.ops.backend import has_module
from heartfast.ops.paged import (gather_cache, paged_decode_reference, paged_prefill_reference,
                                 reshape_and_cache_reference)

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DEVICE = "cuda"
HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
TOKENS_PER_BATCH = 16384
DENSE_LENGTHS = (1024, 2048, 4096, 8192, 16384)
DECODE_BATCHES = (1, 4, 8, 32, 64, 128)
DECODE_CONTEXTS = (1024, 4096, 8192)
PREFILL_SHAPE = (4, 3584, 512)  # batch, cached prefix, new chunk
BLOCK_SIZE = 16


def _rand(*shape, dtype, grad=False):
    return torch.randn(*shape, device=DEVICE, dtype=dtype).requires_grad_(grad)


def _check_forward_backward(suite, case, run, run_ref, shapes, dtype) -> None:
    inputs = [_rand(*s, dtype=dtype, grad=True) for s in shapes]
    ref_inputs = [x.detach().double().requires_grad_() for x in inputs]
    out = run(*inputs)
    ref = run_ref(*ref_inputs)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, ref_inputs, grad.double())
    tol = TOLERANCE[dtype]
    suite.check(f"{case} fwd", out, ref, tol)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        suite.check(f"{case} {name}", g, w, tol)


def _check_dtypes(suite) -> tuple:
    """--quick checks bf16 only: each fp32 ('ieee') variant takes ptxas 15-60 s to compile on the H100 host
    (fp32 is checked on CPU under the interpreter by tests/), and fp16 shares bf16's code path."""
    return (torch.bfloat16,) if suite.quick else DTYPES


def check_flash(suite) -> None:
    cases = [(2, 37, 37, 4, 2, 64, True), (1, 77, 301, 6, 2, 96, True), (3, 130, 67, 4, 4, 128, False),
             (1, 1000, 1000, 8, 2, 128, True)]
    for dtype in _check_dtypes(suite):
        for b, s, sk, hq, hkv, d, causal in cases:
            name = f"flash {str(dtype)[6:]} b{b} s{s} sk{sk} h{hq}/{hkv} d{d} {'causal' if causal else 'full'}"
            _check_forward_backward(
                suite, name, lambda q, k, v: flash_attention(q, k, v, causal=causal),
                lambda q, k, v: attention_reference(q, k, v, causal=causal),
                [(b, s, hq, d), (b, sk, hkv, d), (b, sk, hkv, d)], dtype)
        lengths = [1, 300, 17, 129, 64]
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
        total = sum(lengths)
        for d in (64, 96):
            _check_forward_backward(
                suite, f"flash varlen {str(dtype)[6:]} d{d} causal",
                lambda q, k, v: attention(q, k, v, causal=True, cu_seqlens=cu, backend="triton"),
                lambda q, k, v: attention(q, k, v, causal=True, cu_seqlens=cu, backend="sdpa"),
                [(total, 4, d), (total, 2, d), (total, 2, d)], dtype)


def _paged_setup(lengths, kv_heads, head_dim, dtype, block_size=BLOCK_SIZE):
    widths = [-(-n // block_size) for n in lengths]
    num_blocks = sum(widths) + 4
    k_cache = _rand(num_blocks, block_size, kv_heads, head_dim, dtype=dtype)
    v_cache = torch.randn_like(k_cache)
    order = torch.randperm(num_blocks, device=DEVICE).to(torch.int32)
    tables = torch.zeros(len(lengths), max(widths), dtype=torch.int32, device=DEVICE)
    used = 0
    for b, w in enumerate(widths):
        tables[b, :w] = order[used:used + w]
        used += w
    return k_cache, v_cache, tables, torch.tensor(lengths, dtype=torch.int32, device=DEVICE)


def check_paged(suite) -> None:
    for dtype in _check_dtypes(suite):
        tol = TOLERANCE[dtype]
        for hq, hkv, d in ((32, 8, 128), (12, 12, 96)):
            lengths = [1, 15, 16, 17, 1000, 4097]
            k_cache, v_cache, tables, seq_lens = _paged_setup(lengths, hkv, d, dtype)
            q = _rand(len(lengths), hq, d, dtype=dtype)
            ref = paged_decode_reference(q.double(), k_cache.double(), v_cache.double(), tables, seq_lens)
            for splits in (1, 4, None):
                out = paged_kernels.paged_decode(q, k_cache, v_cache, tables, seq_lens, num_splits=splits)
                suite.check(f"paged decode {str(dtype)[6:]} h{hq}/{hkv} d{d} splits={splits}", out, ref, tol)
            cu = torch.tensor([0, 1, 16, 16, 33, 533, 1533], dtype=torch.int32, device=DEVICE)  # new-chunk sizes
            qp = _rand(int(cu[-1]), hq, d, dtype=dtype)
            ref = paged_prefill_reference(qp.double(), k_cache.double(), v_cache.double(), tables, cu, seq_lens)
            out = paged_kernels.paged_prefill(qp, k_cache, v_cache, tables, cu, seq_lens, max_seqlen_q=1000)
            suite.check(f"paged prefill {str(dtype)[6:]} h{hq}/{hkv} d{d}", out, ref, tol)
        slots = torch.randperm(k_cache.shape[0] * BLOCK_SIZE, device=DEVICE)[:777]
        slots[::7] = -1
        k, v = _rand(777, 12, 96, dtype=dtype), _rand(777, 12, 96, dtype=dtype)
        want_k, want_v = k_cache.clone(), v_cache.clone()
        reshape_and_cache_reference(k, v, want_k, want_v, slots)
        paged_kernels.reshape_and_cache(k, v, k_cache, v_cache, slots)
        suite.check(f"reshape_and_cache {str(dtype)[6:]} k (exact)", k_cache, want_k, 1e-12)
        suite.check(f"reshape_and_cache {str(dtype)[6:]} v (exact)", v_cache, want_v, 1e-12)


def _sdpa_flash(q, k, v, causal):
    """SDPA restricted to its flash backend (FA2's kernel); [B, S, H, D] in and out."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal).transpose(1, 2)


def _dense_impls() -> dict:
    impls = {"heartfast triton": lambda q, k, v: attention(q, k, v, causal=True, backend="triton"),
             "sdpa flash (FA2)": lambda q, k, v: _sdpa_flash(q, k, v, True)}
    if has_module("flash_attn"):
        impls["flash-attn"] = lambda q, k, v: attention(q, k, v, causal=True, backend="flash-attn")
    if has_module("xformers"):
        impls["xformers"] = lambda q, k, v: attention(q, k, v, causal=True, backend="xformers")
    return impls


def time_dense(suite) -> None:
    lengths = DENSE_LENGTHS[::2] if suite.quick else DENSE_LENGTHS
    for s in lengths:
        b = TOKENS_PER_BATCH // s
        # Equal head counts: SDPA's flash backend has no GQA, so every implementation does the same work.
        q, k, v = (_rand(b, s, HEADS, HEAD_DIM, dtype=torch.bfloat16, grad=True) for _ in range(3))
        grad = torch.randn_like(q)
        flops = 4 * b * s * s * HEAD_DIM * HEADS / 2
        with torch.no_grad():
            suite.check(f"attn fwd causal bf16 d128 b{b} s{s}: tuned triton vs sdpa",
                        attention(q, k, v, causal=True, backend="triton"), _sdpa_flash(q, k, v, True), 1e-2)
        for impl, fn in _dense_impls().items():
            with torch.no_grad():
                suite.time(f"attn fwd causal bf16 d128 b{b} s{s}", impl, lambda: fn(q, k, v), flops=flops)
            try:
                out = fn(q, k, v)
            except Exception as exc:  # recorded like a failed timing
                suite.failures.append(f"attn bwd s{s}/{impl}: {type(exc).__name__}: {exc}")
                continue
            suite.time(f"attn bwd causal bf16 d128 b{b} s{s}", impl,
                       lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), flops=2.5 * flops)
            del out
        del q, k, v, grad
        torch.cuda.empty_cache()


def _flash_attn_decode(q, k_cache, v_cache, tables, seq_lens):
    from flash_attn import flash_attn_with_kvcache

    return flash_attn_with_kvcache(q[:, None], k_cache, v_cache, cache_seqlens=seq_lens, block_table=tables)[:, 0]


def _sdpa_dense_decode(q, k, v):
    """SDPA over a dense [B, Hkv, L, D] cache (gathered beforehand: the gather is not timed)."""
    return torch.nn.functional.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True)[:, :, 0]


def time_decode(suite) -> None:
    batches = DECODE_BATCHES[::2] if suite.quick else DECODE_BATCHES
    contexts = DECODE_CONTEXTS[::2] if suite.quick else DECODE_CONTEXTS
    dtype = torch.bfloat16
    for length in contexts:
        for batch in batches:
            k_cache, v_cache, tables, seq_lens = _paged_setup([length] * batch, KV_HEADS, HEAD_DIM, dtype)
            q = _rand(batch, HEADS, HEAD_DIM, dtype=dtype)
            case = f"decode bf16 h{HEADS}/{KV_HEADS} d128 b{batch} ctx{length}"
            nbytes = 2 * batch * length * KV_HEADS * HEAD_DIM * 2
            flops = 4 * batch * length * HEADS * HEAD_DIM
            splits = paged_kernels.choose_num_splits(batch, KV_HEADS, length, paged_kernels.multiprocessors(q.device))
            k = torch.stack([gather_cache(k_cache, tables[b], length) for b in range(batch)])
            v = torch.stack([gather_cache(v_cache, tables[b], length) for b in range(batch)])
            k, v = k.permute(0, 2, 1, 3).contiguous(), v.permute(0, 2, 1, 3).contiguous()
            suite.check(f"{case}: tuned triton vs sdpa", paged_kernels.paged_decode(
                q, k_cache, v_cache, tables, seq_lens, max_seq_len=length), _sdpa_dense_decode(q, k, v), 1e-2)
            suite.time(case, "heartfast triton", lambda: paged_kernels.paged_decode(
                q, k_cache, v_cache, tables, seq_lens, max_seq_len=length), flops=flops, bytes=nbytes, splits=splits)
            suite.time(case, "triton split-KV off", lambda: paged_kernels.paged_decode(
                q, k_cache, v_cache, tables, seq_lens, num_splits=1, max_seq_len=length), flops=flops, bytes=nbytes)
            if has_module("flash_attn"):
                fa = _paged_setup([length] * batch, KV_HEADS, HEAD_DIM, dtype, block_size=256)
                suite.time(case, "flash_attn_with_kvcache", lambda: _flash_attn_decode(q, *fa), flops=flops,
                           bytes=nbytes)
                del fa
            suite.time(case, "sdpa dense (pre-gathered)", lambda: _sdpa_dense_decode(q, k, v), flops=flops,
                       bytes=nbytes)
            del k_cache, v_cache, k, v
            torch.cuda.empty_cache()


def time_prefill(suite) -> None:
    """A chunk of new tokens over a long cached prefix: paged prefill against dense Triton attention."""
    (batch, prefix, chunk), dtype = PREFILL_SHAPE, torch.bfloat16
    total = prefix + chunk
    k_cache, v_cache, tables, seq_lens = _paged_setup([total] * batch, KV_HEADS, HEAD_DIM, dtype)
    q = _rand(batch * chunk, HEADS, HEAD_DIM, dtype=dtype)
    cu = torch.arange(0, batch * chunk + 1, chunk, dtype=torch.int32, device=DEVICE)
    k = torch.stack([gather_cache(k_cache, tables[b], total) for b in range(batch)])
    v = torch.stack([gather_cache(v_cache, tables[b], total) for b in range(batch)])
    flops = 4 * batch * chunk * (total - chunk / 2) * HEAD_DIM * HEADS
    case = f"prefill bf16 b{batch} prefix{prefix}+{chunk}"
    suite.time(case, "heartfast triton", lambda: paged_kernels.paged_prefill(
        q, k_cache, v_cache, tables, cu, seq_lens, max_seqlen_q=chunk), flops=flops)
    qd = q.view(batch, chunk, HEADS, HEAD_DIM)
    suite.time(case, "triton dense (contiguous K/V)", lambda: flash_attention(qd, k, v, causal=True), flops=flops)
    if has_module("flash_attn"):
        suite.time(case, "flash-attn dense", lambda: attention(qd, k, v, causal=True, backend="flash-attn"),
                   flops=flops)


def run(suite) -> None:
    torch.manual_seed(0)
    with first_config_only():   # many shapes: one config each; the timed shapes check their tuned config below
        check_flash(suite)
        check_paged(suite)
    time_dense(suite)
    time_decode(suite)
    time_prefill(suite)
