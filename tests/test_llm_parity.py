"""heartfast's decoder loaded from transformers checkpoints gives transformers' logits (fp32, < 1e-4)."""
from __future__ import annotations

import pytest
import torch
import transformers

from heartfast.model.llm import DecoderLM, PackedCausal

SMALL = dict(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
PHI3_LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0 + 0.1 * i for i in range(8)],
                 "long_factor": [2.0 + 0.3 * i for i in range(8)], "original_max_position_embeddings": 32}


def hf_model(arch: str, **extra) -> transformers.PreTrainedModel:
    kinds = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
             "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
             "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM)}
    config_cls, model_cls = kinds[arch]
    config = config_cls(**{**SMALL, **extra})
    model = model_cls(config).eval()
    with torch.no_grad():  # biases are zero at init; make them count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def max_logit_diff(model: transformers.PreTrainedModel, directory, seq: int = 19, batch: int = 2,
                   **save) -> float:
    model.save_pretrained(directory, **save)
    ours = DecoderLM.from_pretrained(directory).eval()
    ids = torch.randint(0, SMALL["vocab_size"], (batch, seq))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        out = ours(input_ids=ids)
    return (out - ref).abs().max().item()


@pytest.mark.parametrize("arch,extra", [
    ("llama", {}),
    ("llama", {"tie_word_embeddings": True, "attention_bias": True}),
    ("qwen2", {}),
    ("phi3", {"pad_token_id": 0}),
])
def test_logits_match_transformers(arch, extra, tmp_path):
    assert max_logit_diff(hf_model(arch, **extra), tmp_path) < 1e-4


def test_sharded_checkpoint(tmp_path):
    model = hf_model("qwen2")
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert max_logit_diff(model, tmp_path, max_shard_size="20KB") < 1e-4


@pytest.mark.parametrize("arch,rope,seq", [
    ("llama", {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}, 19),
    ("llama", {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}, 40),
    ("llama", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16, "rope_theta": 500000.0}, 19),
    ("phi3", PHI3_LONGROPE, 19),  # short factors
    ("phi3", PHI3_LONGROPE, 40),  # beyond original_max_position_embeddings: long factors
])
def test_rope_scaling_matches(arch, rope, seq, tmp_path):
    extra = {"rope_parameters": rope, "pad_token_id": 0}
    if rope["rope_type"] == "dynamic":
        extra["max_position_embeddings"] = 32  # seq 40 > 32 so the NTK base actually changes
    assert max_logit_diff(hf_model(arch, **extra), tmp_path, seq=seq) < 1e-4


def test_packed_rows_equal_separate_rows(tmp_path):
    hf_model("llama").save_pretrained(tmp_path)
    ours = DecoderLM.from_pretrained(tmp_path).eval()
    a, b = torch.randint(0, 211, (1, 7)), torch.randint(0, 211, (1, 12))
    packed = torch.cat([a, b], dim=1)
    positions = torch.cat([torch.arange(7), torch.arange(12)])[None]
    cu = torch.tensor([0, 7, 19], dtype=torch.int32)
    with torch.no_grad():
        out = ours(input_ids=packed, positions=positions, kv=PackedCausal(cu))
        torch.testing.assert_close(out[:, :7], ours(input_ids=a), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:, 7:], ours(input_ids=b), atol=1e-5, rtol=1e-5)


def test_resize_vocab_mean_rows(tmp_path):
    hf_model("phi3", pad_token_id=0).save_pretrained(tmp_path)
    ours = DecoderLM.from_pretrained(tmp_path)
    mean = ours.model.embed_tokens.weight.mean(0)
    head_mean = ours.lm_head.weight.mean(0)
    ours.resize_vocab(215)
    assert ours.model.embed_tokens.weight.shape == (215, 64) and ours.lm_head.weight.shape == (215, 64)
    torch.testing.assert_close(ours.model.embed_tokens.weight[211:], mean.expand(4, -1))
    torch.testing.assert_close(ours.lm_head.weight[211:], head_mean.expand(4, -1))
    assert ours(input_ids=torch.tensor([[214, 3]])).shape == (1, 2, 215)


def test_parameter_count_formula(tmp_path):
    for arch, extra in [("llama", {"attention_bias": True}), ("qwen2", {"tie_word_embeddings": True}),
                        ("phi3", {"pad_token_id": 0})]:
        hf_model(arch, **extra).save_pretrained(tmp_path / arch)
        ours = DecoderLM.from_pretrained(tmp_path / arch)
        assert ours.config.parameter_count() == sum(p.numel() for p in ours.parameters())


def test_gradient_checkpointing_same_gradients(tmp_path):
    hf_model("qwen2").save_pretrained(tmp_path)
    ours = DecoderLM.from_pretrained(tmp_path).train()
    ids = torch.randint(0, 211, (2, 13))

    def grads() -> list[torch.Tensor]:
        ours.zero_grad()
        ours(input_ids=ids).square().mean().backward()
        return [p.grad.clone() for p in ours.parameters()]

    plain = grads()
    ours.gradient_checkpointing = True
    for a, b in zip(plain, grads()):
        torch.testing.assert_close(a, b)
