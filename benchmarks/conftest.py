"""CPU benchmarks (pytest-benchmark): ratios measured side by side in one run."""
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TRITON_INTERPRET", "0")


@pytest.fixture
def one_thread():
    """Pin torch to one thread: on a shared 2-core machine, two threads per process oversubscribe and
    make timings swing by several times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def llama_config(c):
    """transformers LlamaConfig with the shapes of a heartfast DecoderConfig."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                       num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                       num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
                       rms_norm_eps=c.rms_norm_eps, rope_theta=c.rope["rope_theta"])


def tiny_hf_llama(path: Path):
    """A transformers Llama with the `tiny` preset's decoder shapes, saved to `path` (same weights for both sides)."""
    from transformers import LlamaForCausalLM

    from heartfast.model.presets import TINY_LLM

    torch.manual_seed(0)
    hf = LlamaForCausalLM(llama_config(TINY_LLM))
    hf.save_pretrained(path)
    return hf
