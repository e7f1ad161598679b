"""Engine throughput on CPU, side by side in one run (torch on one thread for stable numbers).

1. vs transformers `generate` on the same weights (tiny-preset decoder shapes), batch 32, greedy:
   - uniform: 32 distinct 200-token prompts, 40 new tokens each (generate's best case: no padding, no
     request finishes early);
   - bench-like: prompt lengths 100-400 and answer budgets of 2 (option letter), 12 (a sentence) or 40
     (a report) tokens, as Heartcare-Bench mixes them. generate pads to the longest prompt and runs every
     row to the longest answer; the engine packs prompts and retires each request when it is done.
2. Prefix cache on vs off: 8 ECGs × 6 questions (Heartcare-Bench asks many questions per ECG) on the tiny
   HeartcareGPT, the ECG prefix (system prompt, image and signal tokens) shared by each ECG's questions.
3. The tiny preset itself (HeartcareGPT: image + signal + question) on that bench, batch 32: the engine as
   shipped (prefix cache on) vs transformers `generate` on the same decoder weights, fed the same prompt
   embeddings (each batch's ECGs encoded and projected by the model, as a plain loop would), left-padded.

    .venv/bin/python -m pytest benchmarks/test_bench_engine.py --benchmark-group-by=group -q
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from heartfast.engine.engine import Engine, Request
from heartfast.engine.sampling import SamplingParams

BATCH, PROMPT, NEW = 32, 200, 40
BUDGETS = (2, 12, 40)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _workload(kind: str) -> tuple[list[list[int]], list[int]]:
    rng = np.random.default_rng(0)
    if kind == "uniform":
        return rng.integers(3, 259, (BATCH, PROMPT)).tolist(), [NEW] * BATCH
    lengths = rng.integers(100, 401, BATCH)
    return [rng.integers(3, 259, int(n)).tolist() for n in lengths], rng.choice(BUDGETS, BATCH).tolist()


@pytest.fixture(scope="module")
def same_weights(tmp_path_factory):
    from conftest import tiny_hf_llama

    from heartfast.model.llm import DecoderLM

    path = tmp_path_factory.mktemp("tiny-llama")
    hf = tiny_hf_llama(path).eval()
    return hf, DecoderLM.from_pretrained(path)


@pytest.mark.parametrize("kind", ["uniform", "bench-like"])
def test_transformers_generate(benchmark, same_weights, kind):
    benchmark.group = f"generate batch {BATCH}, {kind} workload, tiny decoder"
    hf, _ = same_weights
    prompts, budgets = _workload(kind)
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])          # left padding
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def run():
        with torch.inference_mode():
            return hf.generate(ids, attention_mask=mask, max_new_tokens=max(budgets), min_new_tokens=max(budgets),
                               do_sample=False, pad_token_id=0, eos_token_id=None)

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info["useful_output_tokens_per_s"] = round(sum(budgets) / benchmark.stats.stats.mean, 1)


@pytest.mark.parametrize("kind", ["uniform", "bench-like"])
def test_heartfast_engine(benchmark, same_weights, kind):
    benchmark.group = f"generate batch {BATCH}, {kind} workload, tiny decoder"
    _, lm = same_weights
    prompts, budgets = _workload(kind)
    requests = [Request(str(i), p, params=SamplingParams(max_tokens=n))
                for i, (p, n) in enumerate(zip(prompts, budgets))]

    def run():
        return Engine(lm, block_size=16, max_batched_tokens=16384, max_seqs=BATCH, prefix_cache=False).generate(requests)

    out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert [len(r.token_ids) for r in out] == budgets
    benchmark.extra_info["useful_output_tokens_per_s"] = round(sum(budgets) / benchmark.stats.stats.mean, 1)


@pytest.fixture(scope="module")
def bench_workload():
    from heartfast.model.presets import build_model

    torch.manual_seed(0)
    model, tokenizer = build_model("tiny")
    rng = np.random.default_rng(0)
    size = model.vision.config.image_size
    system = ("You are a cardiologist reading a 12-lead ECG recorded at 500 Hz for ten seconds. Look at the image "
              "and the signal, consider rhythm, rate, axis, intervals, waveform and ST-T changes, then answer. ")
    questions = ["What is the rhythm?", "Is the axis normal?", "Is there ST elevation?", "Is the QRS wide?",
                 "Which option fits: A sinus, B AF, C flutter, D SVT?", "Summarise the ECG."]
    requests = []
    for e in range(8):
        signal = rng.standard_normal((12, 5000)).astype(np.float32) * 0.3
        image = torch.rand(3, size, size)
        for q, question in enumerate(questions):
            requests.append(Request(f"{e}-{q}", f"{system}<image><signal> {question}", signals=[signal],
                                    images=[image], params=SamplingParams(max_tokens=8)))
    return model, tokenizer, requests


@pytest.mark.parametrize("prefix_cache", [False, True], ids=["prefix-cache-off", "prefix-cache-on"])
@pytest.mark.benchmark(group="48 questions on 8 ECGs (6 each), tiny HeartcareGPT")
def test_prefix_cache(benchmark, bench_workload, prefix_cache):
    model, tokenizer, requests = bench_workload

    def run():
        engine = Engine(model, tokenizer, block_size=16, max_seqs=16, max_batched_tokens=4096,
                        prefix_cache=prefix_cache)
        return engine, engine.generate(requests)

    engine, out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert len(out) == len(requests)
    benchmark.extra_info["cached_prompt_tokens"] = engine.stats.cached_prompt_tokens
    benchmark.extra_info["prompt_tokens"] = engine.stats.prompt_tokens


def _hf_decoder(lm):
    """transformers Llama with the engine model's decoder weights (same parameter names)."""
    from conftest import llama_config
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM(llama_config(lm.config))
    hf.load_state_dict({k: v.detach().clone() for k, v in lm.state_dict().items()})
    return hf.eval()


def _generate_bench(model, tokenizer, hf, requests, batch: int) -> list[list[int]]:
    from heartfast.model.heartcare import MultimodalBatch, build_input_ids

    answers = []
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        sig = model.signal_features(torch.stack([torch.as_tensor(r.signals[0]) for r in chunk]), 500.0)
        img = model.image_features(torch.stack([r.images[0] for r in chunk]))
        ids = [build_input_ids(tokenizer, r.prompt, model.spans, signal_tokens=[sig.shape[1]],
                               image_tokens=[img.shape[1] * model.projector.image_tokens]) for r in chunk]
        flat = MultimodalBatch(input_ids=torch.tensor([[t for i in ids for t in i]]), signal_features=sig,
                               image_features=img)
        rows = model.embed(flat)[0].split([len(i) for i in ids])
        width = max(len(i) for i in ids)
        embeds = torch.stack([torch.cat((r.new_zeros(width - len(r), r.shape[1]), r)) for r in rows])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
        new = chunk[0].params.max_tokens
        out = hf.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                          do_sample=False, pad_token_id=0, eos_token_id=None)
        answers += out[:, -new:].tolist()
    return answers


@pytest.mark.parametrize("impl", ["transformers-generate", "heartfast-engine"])
@pytest.mark.benchmark(group="tiny preset: 48 questions on 8 ECGs, batch 32")
def test_tiny_preset_bench(benchmark, bench_workload, impl):
    model, tokenizer, requests = bench_workload
    if impl == "heartfast-engine":
        def run():
            engine = Engine(model, tokenizer, block_size=16, max_seqs=32, max_batched_tokens=4096)
            return [r.token_ids for r in engine.generate(requests)]
    else:
        hf = _hf_decoder(model.llm)

        def run():
            with torch.inference_mode():
                return _generate_bench(model, tokenizer, hf, requests, batch=32)
    out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert len(out) == len(requests) and all(len(o) == 8 for o in out)
    benchmark.extra_info["answers"] = out
