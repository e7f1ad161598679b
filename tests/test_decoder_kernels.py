"""The fused decoder-layer kernels (Triton interpreter) against their torch references, and a whole decoder
run through them against the torch path."""
from __future__ import annotations

import pytest
import torch

from heartfast.ops.decoder import (add_rms_norm, add_rms_norm_reference, rotary, rotary_reference, silu_mul)

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture
def triton_backend(monkeypatch):
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("with_delta", [True, False])
def test_add_rms_norm(triton_backend, dtype, with_delta):
    x, delta = torch.randn(2, 7, 200).to(dtype), torch.randn(2, 7, 200).to(dtype)
    weight = (1 + 0.1 * torch.randn(200)).to(dtype)
    out, total = add_rms_norm(x, delta if with_delta else None, weight, 1e-5)
    want, want_total = add_rms_norm_reference(x, delta if with_delta else None, weight, 1e-5)
    assert out.dtype == want.dtype and out.shape == want.shape
    assert rel(out, want) < TOLERANCE[dtype]
    assert torch.equal(total, want_total)     # the residual sum is one rounding in the dtype, as in torch


def test_add_rms_norm_fp32_weight_on_half_rows(triton_backend):
    """A half-precision row with an fp32 weight (autocast-style) comes out fp32, like the reference."""
    x, weight = torch.randn(5, 96).half(), 1 + 0.1 * torch.randn(96)
    out, _ = add_rms_norm(x, None, weight, 1e-6)
    want, _ = add_rms_norm_reference(x, None, weight, 1e-6)
    assert out.dtype == torch.float32 and rel(out, want) < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("rot", [24, 16])   # full and partial rotary on heads of 24
def test_rotary_in_place_on_fused_qkv_slices(triton_backend, dtype, rot):
    """q and k as column slices of one packed qkv projection (strided rows), 6 query and 2 key heads."""
    tokens, hq, hk, d = 9, 6, 2, 24
    qkv = torch.randn(1, tokens, (hq + 2 * hk) * d).to(dtype)
    q = qkv[..., :hq * d].view(1, tokens, hq, d)
    k = qkv[..., hq * d:(hq + hk) * d].view(1, tokens, hk, d)
    angles = torch.rand(1, tokens, rot // 2) * 6
    cos = torch.cat((angles.cos(), angles.cos()), -1).to(dtype)
    sin = torch.cat((angles.sin(), angles.sin()), -1).to(dtype)
    want_q, want_k = rotary_reference(q.clone(), cos, sin), rotary_reference(k.clone(), cos, sin)
    v_before = qkv[..., (hq + hk) * d:].clone()
    got_q, got_k = rotary(q, k, cos, sin)
    assert rel(got_q, want_q) < TOLERANCE[dtype] and rel(got_k, want_k) < TOLERANCE[dtype]
    assert torch.equal(qkv[..., (hq + hk) * d:], v_before)       # v, beside them, untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_silu_mul_on_fused_gate_up(triton_backend, dtype):
    gate_up = torch.randn(3, 5, 2 * 1100).to(dtype)      # 1100: not a multiple of the 1024 block
    gate, up = gate_up.chunk(2, dim=-1)
    got = silu_mul(gate, up)
    assert got.shape == (3, 5, 1100)
    assert rel(got, torch.nn.functional.silu(gate) * up) < TOLERANCE[dtype]


def _grads(fn, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    """Gradients of a fixed random projection of fn's outputs with respect to `inputs`."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    outs = fn(*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o.float() * torch.randn(o.shape, generator=gen)).sum() for o in outs)
    return list(torch.autograd.grad(loss, leaves))


@pytest.mark.parametrize("with_delta", [True, False])
def test_add_rms_norm_backward(monkeypatch, with_delta):
    """Gradients to x, delta and the weight, the residual sum's own gradient included (both outputs used)."""
    x, delta, weight = torch.randn(13, 200), torch.randn(13, 200), 1 + 0.1 * torch.randn(200)
    inputs = [x, delta, weight] if with_delta else [x, weight]

    def fn(*t):
        out, total = add_rms_norm(t[0], t[1] if with_delta else None, t[-1], 1e-5)
        return (out, total) if with_delta else out
    monkeypatch.setenv("HEARTFAST_BACKEND", "torch")
    want = _grads(fn, inputs)
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    got = _grads(fn, inputs)
    for g, w in zip(got, want):
        assert rel(g, w) < 1e-5


def test_rotary_backward(monkeypatch):
    tokens, hq, hk, d, rot = 7, 6, 2, 24, 16
    q, k = torch.randn(tokens, hq, d), torch.randn(tokens, hk, d)
    angles = torch.rand(tokens, rot // 2) * 6
    cos, sin = torch.cat((angles.cos(), angles.cos()), -1), torch.cat((angles.sin(), angles.sin()), -1)

    def fn(q, k):
        return rotary(q, k, cos, sin)
    monkeypatch.setenv("HEARTFAST_BACKEND", "torch")
    want = _grads(fn, [q, k])
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    got = _grads(fn, [q, k])
    for g, w in zip(got, want):
        assert rel(g, w) < 1e-5


def test_silu_mul_backward_on_fused_gate_up(monkeypatch):
    def fn(gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        return silu_mul(gate, up)
    gate_up = torch.randn(5, 2 * 1100)
    monkeypatch.setenv("HEARTFAST_BACKEND", "torch")
    want = _grads(fn, [gate_up])
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    got = _grads(fn, [gate_up])
    assert rel(got[0], want[0]) < 1e-5


def test_decoder_through_fused_kernels_matches_torch_path(monkeypatch):
    from heartfast.model.llm import DecoderConfig, DecoderLM

    cfg = DecoderConfig(vocab_size=50, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    lm = DecoderLM(cfg).eval()
    ids = torch.randint(0, 50, (2, 11))
    monkeypatch.setenv("HEARTFAST_BACKEND", "torch")
    with torch.inference_mode():
        want = lm(ids)
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    with torch.inference_mode():
        got = lm(ids)
    assert rel(got, want) < 1e-5


def test_decoder_training_step_through_fused_kernels_matches_torch_path(monkeypatch):
    """Loss and every parameter's gradient, the fused training kernels against the torch path."""
    from heartfast.model.llm import DecoderConfig, DecoderLM

    cfg = DecoderConfig(vocab_size=50, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    lm = DecoderLM(cfg)
    ids = torch.randint(0, 50, (2, 11))
    grads = {}
    for backend in ("torch", "triton"):
        monkeypatch.setenv("HEARTFAST_BACKEND", backend)
        lm.zero_grad()
        loss = torch.nn.functional.cross_entropy(lm(ids).flatten(0, 1), ids.roll(-1, 1).flatten())
        loss.backward()
        grads[backend] = (loss.item(), {n: p.grad.clone() for n, p in lm.named_parameters()})
    assert grads["triton"][0] == pytest.approx(grads["torch"][0], rel=1e-5)
    for name, want in grads["torch"][1].items():
        assert rel(grads["triton"][1][name], want) < 1e-4, name


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_projections_same_outputs_names_and_checkpoint(tmp_path, arch):
    """q/k/v and gate/up as one matrix each: same logits, same state-dict names, saved and reloaded, and
    training (gradients to the named weights) unaffected."""
    from heartfast.model.checkpoint import save_state
    from heartfast.model.llm import DecoderConfig, DecoderLM

    cfg = DecoderConfig(arch=arch, vocab_size=50, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    lm = DecoderLM(cfg).eval()
    ids = torch.randint(0, 50, (2, 11))
    with torch.inference_mode():
        want = lm(ids)
    names = sorted(lm.state_dict())
    lm.fuse_projections()
    attn = lm.model.layers[0].self_attn
    assert attn._qkv is not None and attn._qkv.weight.data_ptr() == attn.q_proj.weight.data_ptr()
    with torch.inference_mode():
        got = lm(ids)
    assert rel(got, want) < 1e-5 and sorted(lm.state_dict()) == names
    save_state(lm.state_dict(), tmp_path / "model.safetensors")
    lm.train()
    lm(ids).sum().backward()
    assert attn.k_proj.weight.grad is not None and lm.model.layers[1].mlp.up_proj.weight.grad is not None


def _small_lm():
    from heartfast.model.llm import DecoderConfig, DecoderLM

    return DecoderLM(DecoderConfig(vocab_size=50, hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def test_fusion_keeps_parameter_objects_and_yields_to_later_changes():
    """An optimizer made before fusing still owns the weights; LoRA added after fusing, or a weight replaced,
    is what inference then computes (the stale fusion is dropped)."""
    from heartfast.model.lora import LoraConfig, apply_lora

    lm = _small_lm().eval()
    ids = torch.randint(0, 50, (1, 9))
    attn = lm.model.layers[0].self_attn
    before = attn.v_proj.weight
    lm.fuse_projections()
    assert attn.v_proj.weight is before
    lm.fuse_projections()                                   # twice: a no-op
    assert attn.v_proj.weight is before and attn._qkv is not None
    with torch.no_grad():
        attn.v_proj.weight = torch.nn.Parameter(torch.randn_like(attn.v_proj.weight))
        fused_out = lm(ids)
    assert attn._qkv is None
    assert rel(fused_out, lm(ids).detach()) < 1e-6
    lm.fuse_projections()
    apply_lora(lm, LoraConfig(r=4, alpha=8.0, dropout=0.0, target_modules=("q_proj", "up_proj")))
    for module in lm.modules():
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B)
    with torch.no_grad():
        no_grad = lm(ids)
    assert rel(no_grad, lm(ids).detach()) < 1e-6


def test_rotary_with_positions_broadcast_over_the_batch(monkeypatch):
    """positions [1, S] for a batch of 2: cos/sin broadcast over the batch on both paths."""
    lm = _small_lm().eval()
    ids = torch.randint(0, 50, (2, 7))
    positions = torch.arange(7)[None]
    monkeypatch.setenv("HEARTFAST_BACKEND", "torch")
    with torch.inference_mode():
        want = lm(ids, positions=positions)
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    with torch.inference_mode():
        got = lm(ids, positions=positions)
    assert rel(got, want) < 1e-5


def test_silu_mul_on_transposed_inputs(triton_backend):
    gate, up = torch.randn(40, 6).t(), torch.randn(40, 6).t()
    assert rel(silu_mul(gate, up), torch.nn.functional.silu(gate) * up) < 1e-5
