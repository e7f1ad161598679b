"""The published presets assembled from (tiny) local checkpoint directories, as users build them."""
from __future__ import annotations

import pytest
import torch
import transformers

from heartfast.model import vocab
from heartfast.model.heartcare import MultimodalBatch, build_input_ids
from heartfast.model.presets import build_model

SMALL = dict(vocab_size=259, hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
             num_key_value_heads=2)
TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
             patch_size=8)


def checkpoint_dirs(tmp_path, llm: str, tower: str):
    llm_dir, vision_dir = tmp_path / "llm", tmp_path / "vision"
    lm_classes = {"phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),
                  "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM)}
    config_cls, model_cls = lm_classes[llm]
    model_cls(config_cls(**SMALL, pad_token_id=0)).save_pretrained(llm_dir)
    vocab.byte_tokenizer().save_pretrained(llm_dir)
    tower_cls = transformers.SiglipVisionModel if tower == "siglip" else transformers.CLIPVisionModel
    config = (transformers.SiglipVisionConfig if tower == "siglip" else transformers.CLIPVisionConfig)(**TOWER)
    tower_cls(config).save_pretrained(vision_dir)
    return llm_dir, vision_dir


@pytest.mark.parametrize("preset,llm,tower,signal_tokens,image_tokens", [
    ("heartcare-3.8b", "phi3", "siglip", 20, 12 * 2),  # one 4 s Beat window; 12 crops x 2 tokens
    ("gem-7b", "llama", "clip", 101, 16),  # 100 patches + CLS; (32 / 8)^2 CLIP patches
])
def test_preset_builds_from_local_dirs_and_answers(preset, llm, tower, signal_tokens, image_tokens, tmp_path):
    llm_dir, vision_dir = checkpoint_dirs(tmp_path, llm, tower)
    model, tokenizer = build_model(preset, llm_dir=llm_dir, vision_dir=vision_dir)
    model.eval()
    assert model.config.projector["kind"] == ("gem" if preset == "gem-7b" else "heartcare")
    fs = 250 if preset == "heartcare-3.8b" else 500
    signals = torch.randn(1, 12, 4 * fs)
    images = torch.rand(1, 12, 3, 20, 30) if preset == "heartcare-3.8b" else torch.rand(1, 3, 40, 60)
    assert model.signal_features(signals, fs).shape[1] == signal_tokens
    assert model.image_features(images).shape[1] * model.projector.image_tokens == image_tokens
    ids = build_input_ids(tokenizer, "<image><signal>Which rhythm?", model.spans, signal_tokens=signal_tokens,
                          image_tokens=image_tokens)
    batch = MultimodalBatch(input_ids=torch.tensor([ids]), signals=signals, signal_fs=fs, images=images)
    with torch.no_grad():
        logits = model(batch).logits
    assert logits.shape == (1, len(ids), len(tokenizer)) and torch.isfinite(logits).all()


def test_tiny_gem_builds_without_directories_and_reads_the_whole_record():
    torch.manual_seed(0)
    model, tokenizer = build_model("tiny-gem")
    model.eval()
    assert model.config.signal_encoder == "timeseries" and model.config.projector["kind"] == "gem"
    signals = torch.randn(2, 12, 7 * 500)   # shorter than 10 s: zero-padded like GEM
    features = model.signal_features(signals, 500)
    assert features.shape == (2, 101, 32)
    images = torch.rand(1, 3, 40, 60)
    image_tokens = model.image_features(images).shape[1]
    assert image_tokens == 16   # (32 / 8)^2 CLIP patches of the tiny tower
    ids = build_input_ids(tokenizer, "<image><signal>Which rhythm?", model.spans, signal_tokens=101,
                          image_tokens=image_tokens)
    batch = MultimodalBatch(input_ids=torch.tensor([ids]), signal_features=features[:1], images=images)
    with torch.no_grad():
        logits = model(batch).logits
    assert logits.shape == (1, len(ids), len(tokenizer)) and torch.isfinite(logits).all()
