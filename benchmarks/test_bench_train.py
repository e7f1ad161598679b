"""sft cost on CPU: heartfast's stage step vs a plain transformers + peft LoRA loop, side by side in one run.

Same weights (a LlamaForCausalLM with the tiny preset's decoder shapes, loaded into heartfast through
save_pretrained / DecoderLM.from_pretrained), same LoRA (r 16, α 32, dropout 0.05 on every projection),
same samples (lengths like the synthetic instruction items: 150-400 tokens, loss on the last 24) and the
same global batch of 16, AdamW step included, fp32.
heartfast: one packed varlen row (no padding), chunked linear cross-entropy, through `Trainer.train_step`.
transformers: a right-padded batch with an attention mask and the model's own loss (`labels=`).

    .venv/bin/python -m pytest benchmarks/test_bench_train.py --benchmark-group-by=group --benchmark-timer=time.process_time -q
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from heartfast.train.losses import IGNORE_INDEX
from heartfast.train.packing import Sample, pad
from sft_setup import sft_trainer


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread: two per process on the shared 2-core machine swing both sides several-fold."""
    yield

BATCH, ANSWER, R, ALPHA, DROPOUT = 16, 24, 16, 32.0, 0.05
GROUP = f"sft step, LoRA r{R}, batch {BATCH} (150-400 tokens), tiny decoder"


def samples(vocab_size: int, n: int = 64) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for length in rng.integers(150, 401, n):
        ids = rng.integers(3, vocab_size, length).tolist()
        out.append(Sample(ids, [IGNORE_INDEX] * (length - ANSWER) + ids[-ANSWER:], [], []))
    return out


@pytest.fixture(scope="module")
def same_weights(tmp_path_factory):
    from conftest import tiny_hf_llama

    from heartfast.model import vocab

    path = tmp_path_factory.mktemp("tiny-llama")
    hf = tiny_hf_llama(path)
    vocab.byte_tokenizer().save_pretrained(str(path))
    return hf, path, samples(hf.config.vocab_size)


@pytest.mark.benchmark(group=GROUP)
def test_heartfast_sft_step(benchmark, same_weights, tmp_path):
    _, path, data = same_weights
    trainer = sft_trainer(path, data, str(tmp_path), R, ALPHA, DROPOUT, BATCH)
    benchmark.pedantic(trainer.train_step, rounds=4, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = round(BATCH / benchmark.stats.stats.mean, 2)


@pytest.mark.benchmark(group=GROUP)
def test_transformers_peft_step(benchmark, same_weights):
    from peft import LoraConfig, get_peft_model

    hf, _, data = same_weights
    model = get_peft_model(hf, LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, task_type="CAUSAL_LM",
                                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    position = [0]

    def step():
        chunk = [data[(position[0] + i) % len(data)] for i in range(BATCH)]
        position[0] += BATCH
        batch, mask = pad(chunk, pad_id=0)
        loss = model(input_ids=batch.input_ids, attention_mask=mask, labels=batch.labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    benchmark.pedantic(step, rounds=4, warmup_rounds=1)
    benchmark.extra_info["samples_per_s"] = round(BATCH / benchmark.stats.stats.mean, 2)
