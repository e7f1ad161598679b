"""sft cost on the GPU: heartfast's stage step vs a plain transformers + peft LoRA loop at a realistic size.

Model: a 1.1B Llama (TinyLlama shapes: hidden 2048, 22 layers, 32 heads / 4 KV heads, MLP 5632, vocab 32000)
with random weights, fp32 master weights and bf16 autocast on both sides; LoRA r 64 / α 128 / dropout 0.05
on every projection (the paper's), AdamW step and clipping included. Same weights (saved once with
save_pretrained, loaded into heartfast with DecoderLM.from_pretrained) and the same 16 samples per step with
200-1000 tokens each, loss on the last 64.
heartfast: the sft stage's `Trainer.train_step`: one packed varlen row (Triton / flash varlen attention, no
padding), chunked linear cross-entropy (no [tokens, vocab] fp32 logits).
transformers + peft: right-padded batch, SDPA attention, the model's own loss.
Reported: ms per step, samples/s and MFU (useful FLOPs: 4·N·tokens for a frozen base + attention, over the
H100's 989 TFLOP/s bf16 dense peak) in each row's extra fields.

    python3 benchmarks/gpu_suite.py --only train
"""
from __future__ import annotations

import tempfile

import numpy as np
import torch

from heartfast.train.losses import IGNORE_INDEX
from heartfast.train.packing import Sample, pack, pad
from sft_setup import sft_trainer

BATCH, ANSWER, R, ALPHA, DROPOUT = 16, 64, 64, 128.0, 0.05
SHAPE = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
             num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5)
PEAK_BF16 = 989e12


def make_samples(n: int, low: int, high: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for length in rng.integers(low, high + 1, n):
        ids = rng.integers(3, SHAPE["vocab_size"], length).tolist()
        out.append(Sample(ids, [IGNORE_INDEX] * (length - ANSWER) + ids[-ANSWER:], [], []))
    return out


def step_flops(samples: list[Sample]) -> float:
    """Frozen-base LoRA step: 2N forward + 2N input gradients per token, plus causal attention (fwd + bwd)."""
    h, layers, mlp = SHAPE["hidden_size"], SHAPE["num_hidden_layers"], SHAPE["intermediate_size"]
    kv = h * SHAPE["num_key_value_heads"] // SHAPE["num_attention_heads"]
    n = layers * (2 * h * h + 2 * h * kv + 3 * h * mlp) + SHAPE["vocab_size"] * h
    tokens = sum(len(s) for s in samples)
    attention = sum(3 * 2 * 2 * layers * h * len(s) ** 2 / 2 for s in samples)
    return 4.0 * n * tokens + attention


def _checkpoint(directory: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    from heartfast.model import vocab

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(**SHAPE, attn_implementation="sdpa"))
    hf.save_pretrained(directory)
    vocab.byte_tokenizer().save_pretrained(directory)   # any tokenizer: the samples are token ids
    return hf


def _peft(hf, data: list[Sample]):
    """The loop: fp32 weights under bf16 autocast, as transformers' Trainer runs with bf16=True; `hf` in
    bf16 gives the other common route (base loaded in bf16; peft keeps the adapters in fp32)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(hf.cuda(), LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                 "gate_proj", "up_proj", "down_proj"]))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5)
    position = [0]

    def batch():
        chunk = [data[(position[0] + i) % len(data)] for i in range(BATCH)]
        position[0] += BATCH
        padded, mask = pad(chunk, pad_id=0)
        return padded.input_ids.cuda(), mask.cuda(), padded.labels.cuda()

    def step():
        ids, mask, labels = batch()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def first_loss(samples: list[Sample]) -> torch.Tensor:
        padded, mask = pad(samples, pad_id=0)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(input_ids=padded.input_ids.cuda(), attention_mask=mask.cuda(),
                         labels=padded.labels.cuda()).loss.float()

    return step, first_loss


def run(suite) -> None:

    # Realistic lengths in --quick too: at 200-400 tokens both loops were host-bound (2026-11-22: 253 vs 212 ms)
    # and the ratio measured Python overhead rather than the step's GPU work.
    low, high = 200, 1000
    data = make_samples(4 * BATCH, low, high)
    flops = step_flops(data[:BATCH])   # the samples differ per step; their mean is close to this batch's
    with tempfile.TemporaryDirectory() as directory, tempfile.TemporaryDirectory() as out:
        hf = _checkpoint(directory)
        trainer = sft_trainer(directory, data, out, R, ALPHA, DROPOUT, BATCH)
        peft_step, peft_loss = _peft(hf, data)
        hf_bf16 = _checkpoint(directory).to(torch.bfloat16)
        peft_bf16_step, _ = _peft(hf_bf16, data)
        probe = data[:4]
        loss_fn = trainer.wrapped
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            batch = pack(probe).to("cuda")
            ours = loss_fn(batch).float() / sum(s.answer_tokens for s in probe)
        suite.check("sft 1.1B LoRA: initial loss, heartfast vs transformers", ours[None], peft_loss(probe)[None],
                    2e-2, "same weights, LoRA B = 0; bf16 autocast")
        case = f"sft step 1.1B LoRA r{R}, {BATCH} x {low}-{high} tokens, bf16"
        for impl, fn in (("heartfast sft (packed)", trainer.train_step), ("transformers+peft (padded)", peft_step),
                         ("transformers+peft, base in bf16 (padded)", peft_bf16_step)):
            ms = suite.time(case, impl, fn, flops=flops)
            if ms is not None:
                suite.timings[-1].extra.update(samples_per_s=round(BATCH / ms * 1e3, 2),
                                               mfu=round(flops / (ms * 1e-3) / PEAK_BF16, 4))
        del trainer, hf, hf_bf16
        torch.cuda.empty_cache()
