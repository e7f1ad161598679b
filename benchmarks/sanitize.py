"""Every Triton kernel once, on small odd shapes, for compute-sanitizer's memory and race checks.

    HEARTFAST_AUTOTUNE=0 compute-sanitizer --tool memcheck python3 benchmarks/sanitize.py
    HEARTFAST_AUTOTUNE=0 compute-sanitizer --tool racecheck python3 benchmarks/sanitize.py

HEARTFAST_AUTOTUNE=0 keeps one config per kernel (each tried config would run under the checks too).
Each kernel's result is compared with its reference as well, so a silent out-of-bounds read that happens
to land in mapped memory still shows up as a wrong number.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_tree import use_source_tree  # noqa: E402

use_source_tree()

from heartfast.kernels import paged_attention as paged  # noqa: E402
from heartfast.kernels.flash_attention import flash_attention  # noqa: E402
from heartfast.ops.attention import attention_reference  # noqa: E402
from heartfast.ops.paged import (paged_decode_reference, paged_prefill_reference,  # noqa: E402
                                 reshape_and_cache_reference)
from heartfast.ops.decoder import add_rms_norm_reference, rotary_reference  # noqa: E402
from heartfast.ops.projection import Linear, Norm, Stream, dual_projection, dual_projection_reference  # noqa: E402
from heartfast.ops.vq import vq_assign, vq_ema_stats, vq_reference  # noqa: E402


def report(name: str, out: torch.Tensor, ref: torch.Tensor, tol: float) -> bool:
    err = ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()
    print(f"{name}: rel err {err:.1e} {'ok' if err < tol else 'FAIL'}", flush=True)
    return err < tol


def flash() -> bool:
    q = torch.randn(2, 37, 4, 64, device="cuda", requires_grad=True)
    k = torch.randn(2, 53, 2, 64, device="cuda", requires_grad=True)
    v = torch.randn(2, 53, 2, 64, device="cuda", requires_grad=True)
    out = flash_attention(q, k, v, causal=True)
    ref = attention_reference(q.double(), k.double(), v.double(), causal=True)
    grads = torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    ref_grads = torch.autograd.grad(ref, (q, k, v), torch.ones_like(ref))
    ok = report("flash fwd", out, ref, 1e-3)
    return all([ok] + [report(f"flash bwd {n}", g, r, 1e-3) for n, g, r in zip("qkv", grads, ref_grads)])


def paged_kernels() -> bool:
    bs, lengths = 16, [1, 17, 40]
    k_cache = torch.randn(12, bs, 2, 64, device="cuda")
    v_cache = torch.randn_like(k_cache)
    tables = torch.tensor([[5, 0, 0], [1, 7, 0], [2, 9, 11]], dtype=torch.int32, device="cuda")
    seq_lens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    q = torch.randn(3, 4, 64, device="cuda")
    ok = report("paged decode", paged.paged_decode(q, k_cache, v_cache, tables, seq_lens, num_splits=2),
                paged_decode_reference(q, k_cache, v_cache, tables, seq_lens), 1e-3)
    cu = torch.tensor([0, 1, 6, 19], dtype=torch.int32, device="cuda")
    qp = torch.randn(19, 4, 64, device="cuda")
    ok &= report("paged prefill", paged.paged_prefill(qp, k_cache, v_cache, tables, cu, seq_lens, max_seqlen_q=13),
                 paged_prefill_reference(qp, k_cache, v_cache, tables, cu, seq_lens), 1e-3)
    slots = torch.tensor([3, -1, 40, 100, 191], device="cuda")
    k, v = torch.randn(5, 2, 64, device="cuda"), torch.randn(5, 2, 64, device="cuda")
    want_k, want_v = k_cache.clone(), v_cache.clone()
    reshape_and_cache_reference(k, v, want_k, want_v, slots)
    paged.reshape_and_cache(k, v, k_cache, v_cache, slots)
    return ok & report("reshape_and_cache", torch.cat([k_cache, v_cache]), torch.cat([want_k, want_v]), 1e-12)


def vq() -> bool:
    x, book = torch.randn(101, 37, device="cuda"), torch.randn(77, 37, device="cuda")
    got, ref = vq_assign(x, book, 2, backend="triton"), vq_reference(x, book, 2)
    ok = report("vq assign", got.quantized, ref.quantized, 1e-5)
    stats, ref_stats = vq_ema_stats(x, book, 2, backend="triton"), vq_reference(x, book, 2, stats=True)
    return ok & report("vq ema sums", stats.sums, ref_stats.sums, 1e-5)


def projection() -> bool:
    def w(*shape: int) -> torch.Tensor:
        return (0.1 * torch.randn(*shape, device="cuda")).requires_grad_()

    sig_w, sig_b, ln_w, ln_b, img_w, img_b = w(48, 19), w(48), w(48), w(48), w(96, 23), w(96)
    embeds = torch.randn(3, 29, 48, device="cuda")
    rows_sig = torch.tensor([1, 2, 3, 30, 31, 60], device="cuda")
    rows_img = torch.tensor([5, 6, 40, 41], device="cuda")
    x_sig, x_img = torch.randn(6, 19, device="cuda"), torch.randn(2, 23, device="cuda")
    streams = [Stream(x_sig, rows_sig, [Linear(sig_w, sig_b, gelu=True), Norm(ln_w, ln_b)]),
               Stream(x_img, rows_img, [Linear(img_w, img_b)], tokens=2)]
    out = dual_projection(embeds.clone(), streams, backend="triton")
    ref = dual_projection_reference(embeds, streams)
    grads = torch.autograd.grad(out, [sig_w, img_w], torch.ones_like(out))
    ref_grads = torch.autograd.grad(ref, [sig_w, img_w], torch.ones_like(ref))
    ok = report("dual projection fwd", out, ref, 1e-3)
    return ok & all(report("dual projection bwd", g, r, 1e-3) for g, r in zip(grads, ref_grads))


def decoder() -> bool:
    """Fused residual+RMSNorm, RoPE and SiLU*up, forward (inference) and forward+backward (training)."""
    from heartfast.kernels import decoder as kernels

    x, delta = torch.randn(7, 200, device="cuda"), torch.randn(7, 200, device="cuda")
    weight = (1 + 0.1 * torch.randn(200, device="cuda")).requires_grad_()
    out, _ = kernels.add_rms_norm(x, delta, weight, 1e-5)
    ok = report("add_rms_norm fwd", out, add_rms_norm_reference(x, delta, weight, 1e-5)[0], 1e-5)
    (dw,) = torch.autograd.grad(out.sum(), [weight])
    (ref_dw,) = torch.autograd.grad(add_rms_norm_reference(x, delta, weight, 1e-5)[0].sum(), [weight])
    ok &= report("add_rms_norm bwd", dw, ref_dw, 1e-4)
    qkv = torch.randn(9, 10 * 24, device="cuda")
    q, k = qkv[:, :6 * 24].view(9, 6, 24), qkv[:, 6 * 24:8 * 24].view(9, 2, 24)
    angles = torch.rand(9, 8, device="cuda")
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)
    want = rotary_reference(q.clone(), cos, sin)
    kernels.rotary_(q, k, cos, sin)
    ok &= report("rotary in place", q, want, 1e-5)
    gate_up = torch.randn(5, 2 * 1100, device="cuda", requires_grad=True)
    gate, up = gate_up.chunk(2, dim=-1)
    got = kernels.silu_mul(gate, up)
    ok &= report("silu_mul fwd", got, torch.nn.functional.silu(gate) * up, 1e-5)
    (grad,) = torch.autograd.grad(got.sum(), [gate_up])
    (ref_grad,) = torch.autograd.grad((torch.nn.functional.silu(gate) * up).sum(), [gate_up])
    return ok & report("silu_mul bwd", grad, ref_grad, 1e-5)


if __name__ == "__main__":
    torch.manual_seed(0)
    results = [flash(), paged_kernels(), vq(), projection(), decoder()]
    torch.cuda.synchronize()
    print("all kernels ran" + ("" if all(results) else "; some results were WRONG"))
    raise SystemExit(0 if all(results) else 1)
