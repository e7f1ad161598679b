"""`heartfast model presets|build|parity` end to end on tiny inputs."""
from __future__ import annotations

import torch
import transformers

from heartfast.cli import main
from heartfast.model.heartcare import HeartcareGPT
from heartfast.model.presets import TINY_TOKENIZER_SIZE
from heartfast.model.vocab import MARKERS


def test_parity_command_passes_on_a_transformers_checkpoint(tmp_path, capsys):
    config = transformers.Qwen2Config(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2)
    transformers.Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    assert main(["model", "parity", str(tmp_path), "--tokens", "9"]) == 0
    assert "qwen2: max |logit difference|" in capsys.readouterr().out


def test_build_tiny_and_presets_listing(tmp_path, capsys):
    assert main(["model", "build", "tiny", "--out", str(tmp_path)]) == 0
    model = HeartcareGPT.from_pretrained(tmp_path)
    assert model.llm.config.vocab_size == TINY_TOKENIZER_SIZE + len(MARKERS) and isinstance(model.llm.lm_head.weight, torch.Tensor)
    assert main(["model", "presets"]) == 0
    out = capsys.readouterr().out
    assert "heartcare-3.8b   3,821,079,552" in out and "gem-7b" in out
    assert main(["model", "build", "heartcare-7b", "--out", str(tmp_path / "x")]) == 1
