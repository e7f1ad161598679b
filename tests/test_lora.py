"""LoRA: the explicit formula, exact merge/unmerge, trainable set, fused Phi-3 targets, peft parity."""
from __future__ import annotations

import peft
import pytest
import torch
import transformers

from heartfast.model.llm import DecoderLM
from heartfast.model.lora import LoraConfig, LoraLinear, apply_lora, lora_state_dict, merge_lora, unmerge_lora

SMALL = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)


def randomise_adapters(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)


def test_formula_and_exact_merge_round_trip():
    base = torch.nn.Linear(13, 7)
    layer = LoraLinear(base, LoraConfig(r=3, alpha=6, dropout=0.0))
    randomise_adapters(layer)
    x = torch.randn(5, 13)
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected)
    original = layer.weight.detach().clone()
    layer.merge()
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.weight, original + 2.0 * layer.lora_B @ layer.lora_A)
    layer.unmerge()
    assert torch.equal(layer.weight, original)


def test_only_adapters_trainable_and_fused_phi3_targets(tmp_path):
    config = transformers.Phi3Config(**SMALL, pad_token_id=0)
    transformers.Phi3ForCausalLM(config).save_pretrained(tmp_path)
    lm = DecoderLM.from_pretrained(tmp_path)
    names = apply_lora(lm, LoraConfig(r=4, alpha=8, target_modules=("qkv_proj", "gate_up_proj")))
    assert sorted(n.rsplit(".", 1)[-1] for n in names) == ["gate_up_proj"] * 2 + ["qkv_proj"] * 2
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trainable == set(lora_state_dict(lm)) and len(trainable) == 8
    ids = torch.randint(0, 97, (2, 9))
    before = lm(input_ids=ids).detach()
    torch.testing.assert_close(lm(input_ids=ids), before)  # B = 0: no change at start
    randomise_adapters(lm)
    lm.eval()
    adapted = lm(input_ids=ids).detach()
    assert (adapted - before).abs().max() > 1e-3
    merge_lora(lm)
    torch.testing.assert_close(lm(input_ids=ids), adapted, atol=1e-5, rtol=1e-5)
    unmerge_lora(lm)
    torch.testing.assert_close(lm(input_ids=ids), adapted)


@pytest.mark.parametrize("arch", ["llama", "phi3"])
def test_matches_peft_with_the_same_adapters(arch, tmp_path):
    classes = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, ("q_proj", "v_proj", "down_proj")),
               "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM, ("qkv_proj", "gate_up_proj"))}
    config_cls, model_cls, targets = classes[arch]
    hf = model_cls(config_cls(**SMALL, pad_token_id=0)).eval()
    hf.save_pretrained(tmp_path)
    ours = DecoderLM.from_pretrained(tmp_path).eval()
    apply_lora(ours, LoraConfig(r=4, alpha=12, dropout=0.0, target_modules=targets))
    randomise_adapters(ours)
    theirs = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0,
                                                     target_modules=list(targets))).eval()
    with torch.no_grad():
        for name, tensor in lora_state_dict(ours).items():
            module, kind = name.rsplit(".", 1)
            target = theirs.base_model.model.get_submodule(module)
            getattr(target, kind).default.weight.copy_(tensor)
    ids = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        diff = (ours(input_ids=ids) - theirs(input_ids=ids).logits).abs().max().item()
    assert diff < 1e-4
