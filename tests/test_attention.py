"""Flash attention (Triton, under the interpreter) against a float64 reference, and backend dispatch."""
from __future__ import annotations

import pytest
import torch

from heartfast.ops.attention import PADDING_WASTE_LIMIT, attention, attention_reference, choose_backend, length_groups

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def leaves(*shapes, dtype):
    return [torch.randn(*s, dtype=dtype, requires_grad=True) for s in shapes]


def float64_copies(*tensors):
    return [t.detach().double().requires_grad_() for t in tensors]


def assert_forward_backward(out, ref, inputs, ref_inputs, dtype) -> None:
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad.double())
    assert rel_err(out, ref) < TOLERANCE[dtype]
    for name, x, x_ref in zip("qkv", inputs, ref_inputs):
        assert rel_err(x.grad, x_ref.grad) < TOLERANCE[dtype], f"d{name}"


# (batch, S, Sk, Hq, Hkv, D, causal): odd lengths, GQA, D=96 padded to a 128 block, causal with Sk > S.
CASES = [
    (2, 37, 37, 4, 2, 64, True),
    (1, 37, 53, 2, 1, 96, True),
    (2, 29, 41, 2, 2, 64, False),
    (1, 19, 19, 2, 2, 128, True),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}-s{}-sk{}-h{}/{}-d{}-{}".format(
    *c[:6], "causal" if c[6] else "full"))
def test_dense_forward_backward_matches_float64(case, dtype):
    batch, s, sk, hq, hkv, d, causal = case
    q, k, v = leaves((batch, s, hq, d), (batch, sk, hkv, d), (batch, sk, hkv, d), dtype=dtype)
    ref_inputs = float64_copies(q, k, v)
    out = attention(q, k, v, causal=causal, backend="triton")
    ref = attention_reference(*ref_inputs, causal=causal)
    assert_forward_backward(out, ref, (q, k, v), ref_inputs, dtype)


@pytest.mark.parametrize("causal", [True, False])
def test_several_blocks_per_sequence(causal):
    # S and Sk span several BLOCK_M/BLOCK_N tiles: unmasked interior blocks plus masked diagonal/tail blocks.
    q, k, v = leaves((1, 200, 2, 64), (1, 300, 1, 64), (1, 300, 1, 64), dtype=torch.float32)
    ref_inputs = float64_copies(q, k, v)
    out = attention(q, k, v, causal=causal, scale=0.3, backend="triton")
    ref = attention_reference(*ref_inputs, causal=causal, scale=0.3)
    assert_forward_backward(out, ref, (q, k, v), ref_inputs, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [True, False])
def test_varlen_matches_per_sequence_float64(causal, dtype):
    lengths = [5, 140, 1, 70]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    total = sum(lengths)
    q, k, v = leaves((total, 4, 64), (total, 2, 64), (total, 2, 64), dtype=dtype)
    ref_inputs = float64_copies(q, k, v)
    out = attention(q, k, v, causal=causal, cu_seqlens=cu, max_seqlen=max(lengths), backend="triton")
    ref = attention(*ref_inputs, causal=causal, cu_seqlens=cu, backend="sdpa")
    assert_forward_backward(out, ref, (q, k, v), ref_inputs, dtype)


def test_strided_views_of_a_fused_qkv_projection():
    qkv = torch.randn(2, 33, 3, 2, 64, requires_grad=True)
    q, k, v = qkv.unbind(2)  # non-contiguous views: the kernel reads their strides
    out = attention(q, k, v, causal=True, backend="triton")
    ref_qkv = qkv.detach().double().requires_grad_()
    ref = attention_reference(*ref_qkv.unbind(2), causal=True)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad.double())
    assert rel_err(out, ref) < 1e-5 and rel_err(qkv.grad, ref_qkv.grad) < 1e-5


def test_varlen_sequences_do_not_see_each_other():
    cu = torch.tensor([0, 23, 60], dtype=torch.int32)
    q, k, v = (torch.randn(60, 2, 64) for _ in range(3))
    before = attention(q, k, v, cu_seqlens=cu, backend="triton")
    k2, v2 = k.clone(), v.clone()
    k2[23:] += 5 * torch.randn(37, 2, 64)
    v2[23:] += 5 * torch.randn(37, 2, 64)
    after = attention(q, k2, v2, cu_seqlens=cu, backend="triton")
    assert torch.equal(before[:23], after[:23])
    assert not torch.allclose(before[23:], after[23:])


def test_reference_path_is_the_cpu_default(monkeypatch):
    monkeypatch.delenv("HEARTFAST_BACKEND", raising=False)
    q = torch.randn(1, 5, 2, 64)
    assert choose_backend(q) == "sdpa"
    assert choose_backend(q.half()) == "sdpa"
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    assert choose_backend(q) == "triton"  # the interpreter runs it on CPU
    monkeypatch.setenv("HEARTFAST_BACKEND", "torch")
    assert choose_backend(q) == "sdpa"


def test_env_override_reaches_the_kernel(monkeypatch):
    q, k, v = leaves((1, 21, 2, 64), (1, 21, 2, 64), (1, 21, 2, 64), dtype=torch.float32)
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    out = attention(q, k, v, causal=True)
    assert type(out.grad_fn).__name__ == "FlashAttentionFunctionBackward"
    monkeypatch.setenv("HEARTFAST_BACKEND", "sdpa")
    assert type(attention(q, k, v, causal=True).grad_fn).__name__ != "FlashAttentionFunctionBackward"


def test_unavailable_or_unknown_backend_is_a_clear_error():
    q = torch.randn(1, 5, 2, 64)
    with pytest.raises(RuntimeError, match="flash-attn"):
        choose_backend(q, "flash-attn")  # CPU tensors: never flash-attn
    with pytest.raises(ValueError, match="unknown attention backend"):
        choose_backend(q, "cudnn")


def test_bad_shapes_are_rejected():
    q = torch.randn(1, 8, 3, 64)
    with pytest.raises(ValueError, match="Hq % Hkv"):
        attention(q, torch.randn(1, 8, 2, 64), torch.randn(1, 8, 2, 64))
    with pytest.raises(ValueError, match="fewer keys than queries"):
        attention(q, torch.randn(1, 4, 3, 64), torch.randn(1, 4, 3, 64), causal=True)
    with pytest.raises(ValueError, match="cu_seqlens"):
        attention(q[0], q[0], q[0], cu_seqlens=torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="packed rows"):
        attention(q[0], q[0], q[0], cu_seqlens=torch.tensor([0, 3, 7], dtype=torch.int32))


@pytest.mark.parametrize("causal", [True, False])
def test_varlen_inference_per_sequence_path_equals_the_padded_path(causal):
    # Lengths far apart and no autograd: the sdpa backend runs one SDPA per sequence instead of padding.
    lengths = [3, 200, 17, 1]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v = (torch.randn(sum(lengths), h, 32, dtype=torch.float64) for h in (4, 2, 2))
    with torch.no_grad():
        each = attention(q, k, v, causal=causal, cu_seqlens=cu, backend="sdpa")
    padded = attention(q.requires_grad_(), k, v, causal=causal, cu_seqlens=cu, backend="sdpa")  # autograd: padded
    assert rel_err(each, padded.detach()) < 1e-12
    starts = cu.tolist()
    for a, b in zip(starts[:-1], starts[1:]):
        alone = attention_reference(q[None, a:b].detach(), k[None, a:b], v[None, a:b], causal=causal)[0]
        assert rel_err(each[a:b], alone) < 1e-12


@pytest.mark.parametrize("causal", [True, False])
def test_varlen_training_path_groups_by_length_and_matches_each_sequence(causal):
    """With autograd, sequences of similar length share one padded SDPA call (a long one gets its own) and
    outputs and gradients equal attention run on each sequence alone."""
    lengths = [3, 60, 17, 1, 58, 5]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths))) and len(groups) > 1
    for g in groups:   # every batch within the padding limit
        assert len(g) * max(lengths[i] for i in g) ** 2 <= PADDING_WASTE_LIMIT * sum(lengths[i] ** 2 for i in g) \
            or len(g) == 1
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v = leaves(*[(sum(lengths), h, 16) for h in (4, 2, 2)], dtype=torch.float64)
    out = attention(q, k, v, causal=causal, cu_seqlens=cu, backend="sdpa")
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    starts = cu.tolist()
    for a, b in zip(starts[:-1], starts[1:]):
        qa, ka, va = (x.detach()[a:b].clone().requires_grad_() for x in (q, k, v))
        alone = attention_reference(qa[None], ka[None], va[None], causal=causal)[0]
        (alone * weights[a:b]).sum().backward()
        assert rel_err(out[a:b].detach(), alone.detach()) < 1e-12
        for x, xa in ((q, qa), (k, ka), (v, va)):
            assert rel_err(x.grad[a:b], xa.grad) < 1e-12


def test_varlen_groups_keep_the_dtype_sdpa_returns(monkeypatch):
    """Under bf16 autocast on CUDA, fp32 q/k reach the SDPA path and SDPA returns bf16: the grouped path
    assembles whatever dtype the calls return (no preallocated fp32 output to copy into)."""
    import importlib

    ops = importlib.import_module("heartfast.ops.attention")   # the package exports a function of that name
    real = ops.sdpa_grouped
    monkeypatch.setattr(ops, "sdpa_grouped", lambda *a, **kw: real(*a, **kw).to(torch.bfloat16))
    lengths = [40, 3, 38, 2]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    q, k, v = leaves(*[(sum(lengths), 2, 8) for _ in range(3)], dtype=torch.float32)
    out = attention(q, k, v, causal=True, cu_seqlens=cu, backend="sdpa")
    assert out.dtype == torch.bfloat16 and len(length_groups(lengths)) > 1
    out.float().sum().backward()
    assert q.grad is not None and q.grad.shape == q.shape
