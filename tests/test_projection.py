"""The grouped dual-projection kernel (Triton interpreter) against the torch reference, forward and backward."""
from __future__ import annotations

import pytest
import torch

from heartfast.ops.projection import Linear, Norm, Stream, dual_projection, dual_projection_reference

H = 40  # embedding width: odd relative to every block size


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def param(*shape: int, dtype: torch.dtype, scale: float = 0.2) -> torch.Tensor:
    return (scale * torch.randn(*shape)).to(dtype).requires_grad_()


def heartcare_streams(dtype: torch.dtype, seq: int) -> list[Stream]:
    """Signal 2 ECGs × 3 latents (K=13) → H, LayerNorm; image 3 vectors (K=21) → 2H → 2H as 2 tokens each."""
    rows = torch.randperm(seq)
    sig = Stream(param(6, 13, dtype=dtype, scale=1.0), rows[:6],
                 [Linear(param(H, 13, dtype=dtype), param(H, dtype=dtype), gelu=True),
                  Norm(param(H, dtype=dtype) + 1, param(H, dtype=dtype))], tokens=1)
    img = Stream(param(3, 21, dtype=dtype, scale=1.0), rows[6:12],
                 [Linear(param(2 * H, 21, dtype=dtype), param(2 * H, dtype=dtype), gelu=True),
                  Linear(param(2 * H, 2 * H, dtype=dtype), param(2 * H, dtype=dtype))], tokens=2)
    return [sig, img]


def gem_streams(dtype: torch.dtype, seq: int) -> list[Stream]:
    """Signal 5 tokens (K=11) → adapter 17 → shared MLP (17 → H → H); image 4 tokens (K=17) → shared MLP."""
    rows = torch.randperm(seq)
    fc1 = Linear(param(H, 17, dtype=dtype), param(H, dtype=dtype), gelu=True)
    fc2 = Linear(param(H, H, dtype=dtype), param(H, dtype=dtype))
    adapter = Linear(param(17, 11, dtype=dtype), param(17, dtype=dtype))
    return [Stream(param(5, 11, dtype=dtype, scale=1.0), rows[:5], [adapter, fc1, fc2]),
            Stream(param(4, 17, dtype=dtype, scale=1.0), rows[5:9], [fc1, fc2])]


def leaves(streams: list[Stream]) -> list[torch.Tensor]:
    out = []
    for s in streams:
        out.append(s.x)
        for layer in s.layers:
            out += [layer.weight, layer.bias]
    return list({id(t): t for t in out if t.is_leaf}.values())


@pytest.mark.parametrize("builder", [heartcare_streams, gem_streams])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-2)])
def test_forward_and_backward_match_reference(builder, dtype, tol):
    seq = 2 * 9
    streams = builder(dtype, seq)
    base = torch.randn(2, 9, H).to(dtype)
    grad_out = torch.randn(2, 9, H).to(dtype)

    def run(fn, backend):
        embeds_leaf = base.clone().requires_grad_()
        embeds = embeds_leaf * 1  # not a leaf: the kernel writes in place
        out = fn(embeds, streams, **({"backend": backend} if backend else {}))
        params = leaves(streams)
        grads = torch.autograd.grad(out, [embeds_leaf, *params], grad_out)
        return out.detach(), grads

    ref_out, ref_grads = run(dual_projection_reference, None)
    out, grads = run(dual_projection, "triton")
    assert rel(out, ref_out) < tol
    for g, r in zip(grads, ref_grads):
        assert rel(g, r) < tol * (1 if dtype == torch.float32 else 2)


def test_rows_outside_placeholders_untouched_and_grad_zero_at_placeholders():
    streams = heartcare_streams(torch.float32, 18)
    embeds_leaf = torch.randn(18, H, requires_grad=True)
    out = dual_projection(embeds_leaf * 1, streams, backend="triton")
    written = torch.cat([streams[0].rows, streams[1].rows])
    kept = torch.ones(18, dtype=torch.bool)
    kept[written] = False
    torch.testing.assert_close(out[kept], embeds_leaf[kept])
    (g,) = torch.autograd.grad(out.sum(), embeds_leaf)
    assert torch.all(g[written] == 0) and torch.all(g[kept] == 1)


def test_bad_rows_rejected():
    streams = heartcare_streams(torch.float32, 18)
    streams[1].rows = streams[1].rows[:-1]
    with pytest.raises(ValueError, match="rows has 5 entries"):
        dual_projection_reference(torch.zeros(18, H), streams)


def test_mixed_stream_dtypes_rejected_on_the_kernel_path():
    streams = heartcare_streams(torch.float32, 18)
    with pytest.raises(ValueError, match="one dtype"):
        streams[0].x = streams[0].x.half()
        dual_projection(torch.zeros(18, H), streams, backend="triton")


def test_half_projector_fills_float_embeddings():
    """The autocast case: fp16 stream math, rows cast into fp32 embeddings; gradients reach fp32 weights."""
    def half(layer: Linear | Norm) -> Linear | Norm:
        if isinstance(layer, Norm):
            return Norm(layer.weight.half(), layer.bias.half(), layer.eps)
        return Linear(layer.weight.half(), layer.bias.half(), layer.gelu)

    streams32 = heartcare_streams(torch.float32, 18)
    streams16 = [Stream(s.x.half(), s.rows, [half(layer) for layer in s.layers], s.tokens) for s in streams32]
    base = torch.randn(18, H)
    out = dual_projection(base.clone(), streams16, backend="triton")
    ref = dual_projection_reference(base, streams32)
    assert out.dtype == torch.float32 and rel(out, ref) < 1e-2
    weight = streams32[1].layers[1].weight
    (g,) = torch.autograd.grad(out.square().sum(), weight)
    (r,) = torch.autograd.grad(ref.square().sum(), weight)
    assert g.dtype == torch.float32 and rel(g, r) < 2e-2


def test_inference_matches_training_forward():
    streams = gem_streams(torch.float32, 18)
    base = torch.randn(18, H)
    with torch.no_grad():
        inference = dual_projection(base.clone(), streams, backend="triton")
    training = dual_projection(base.clone(), streams, backend="triton")
    assert training.requires_grad and not inference.requires_grad
    torch.testing.assert_close(inference, training.detach())
