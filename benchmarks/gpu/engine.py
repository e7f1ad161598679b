"""The batch inference engine on the GPU: parity with transformers `generate`, then throughput side by side.

Parity (fp32, the tiny preset's decoder shapes): greedy tokens of the engine (CUDA graphs on and off, and
with a repetition penalty of 1.1) equal `generate`'s on the same weights for prompts of different lengths.
Throughput (bf16, a 1.1B Llama with TinyLlama's shapes and random weights, batch 64, greedy), the
requests' useful output tokens per second:
- uniform: 64 prompts of 512 tokens, 128 new tokens each (generate's best case: nothing to pad or retire);
- bench-like: prompts of 200-1000 tokens, answer budgets of 2 (option letter), 16 (a sentence) or 128
  (a report) tokens, as Heartcare-Bench mixes them. generate pads to the longest prompt and runs every
  row to the longest answer; the engine packs prompts and retires each request when it is done; and the
  same with a repetition penalty of 1.1 (the papers' evaluation setting, `heartfast infer`'s default).
Prefix cache (the same 1.1B model): 16 ECGs × 6 questions, each prompt a shared 64-token system prompt, the
ECG's own 512 tokens (a HeartcareGPT prompt's image and signal tokens) and a 12-32-token question, answers
of 8 tokens (closed QA); the engine with the prefix cache on against the same engine with it off.
Each implementation runs the whole workload once to warm up, then `REPEATS` times (median wall time).

    python3 benchmarks/gpu_suite.py --only engine
"""
from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import torch

from heartfast.engine.engine import Engine, EngineStats, Request
from heartfast.engine.sampling import SamplingParams
from heartfast.model.llm import DecoderLM

BATCH, REPEATS = 64, 3
SHAPE = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
             num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5)


def _workload(kind: str, vocab: int, rng: np.random.Generator) -> tuple[list[list[int]], list[int]]:
    if kind == "uniform":
        return rng.integers(3, vocab, (BATCH, 512)).tolist(), [128] * BATCH
    lengths = rng.integers(200, 1001, BATCH)
    return [rng.integers(3, vocab, int(n)).tolist() for n in lengths], rng.choice((2, 16, 128), BATCH).tolist()


def _generate(hf, prompts: list[list[int]], new_tokens: int, penalty: float = 1.0) -> list[list[int]]:
    """transformers generate, left-padded, greedy, exactly `new_tokens` per row."""
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device="cuda")
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device="cuda")
    with torch.inference_mode():
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                          do_sample=False, pad_token_id=0, eos_token_id=None, repetition_penalty=penalty)
    return out[:, width:].tolist()


def _engine_tokens(engine: Engine, prompts: list[list[int]], budgets: list[int],
                   penalty: float = 1.0) -> list[list[int]]:
    requests = [Request(str(i), p, params=SamplingParams(max_tokens=n, repetition_penalty=penalty))
                for i, (p, n) in enumerate(zip(prompts, budgets))]
    return [r.token_ids for r in engine.generate(requests)]


def _wall_ms(fn) -> float:
    fn()
    times = []
    for _ in range(REPEATS):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _save(shape: dict, dtype: torch.dtype, directory: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(**shape, attn_implementation="sdpa"))
    hf.save_pretrained(directory)
    return hf.to("cuda", dtype).eval(), DecoderLM.from_pretrained(directory, dtype=dtype, device="cuda").eval()


def check_parity(suite) -> None:
    from heartfast.model.presets import TINY_LLM as c

    shape = dict(vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                 num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                 num_key_value_heads=c.num_key_value_heads, max_position_embeddings=c.max_position_embeddings,
                 rms_norm_eps=c.rms_norm_eps)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as directory:
        hf, lm = _save(shape, torch.float32, directory)
        prompts = [rng.integers(3, c.vocab_size, int(n)).tolist() for n in (5, 77, 130, 300, 1, 64, 17, 250)]
        for penalty, graphs in ((1.0, True), (1.0, False), (1.1, True)):   # 1.1: the penalty on the device
            want = [_generate(hf, [p], 24, penalty)[0] for p in prompts]
            engine = Engine(lm, block_size=16, max_seqs=8, cuda_graphs=graphs, gpu_memory_fraction=0.05)
            got = _engine_tokens(engine, prompts, [24] * len(prompts), penalty)
            same = sum(g == w for g, w in zip(got, want))
            suite.expect(f"engine greedy == generate, fp32 tiny decoder, cuda graphs {'on' if graphs else 'off'}, "
                         f"repetition penalty {penalty}", same == len(prompts), f"{same}/{len(prompts)} identical")


def time_throughput(suite) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        hf, lm = _save(SHAPE, torch.bfloat16, directory)
        for kind, penalty in (("uniform", 1.0), ("bench-like", 1.0), ("bench-like", 1.1)):
            prompts, budgets = _workload(kind, SHAPE["vocab_size"], rng)
            case = f"generate 1.1B bf16 batch {BATCH}, {kind}"
            if penalty != 1.0:
                case += f", repetition penalty {penalty}"
            useful = sum(budgets)
            impls = {
                "heartfast engine": Engine(lm, block_size=16, max_seqs=BATCH, max_batched_tokens=16384,
                                           prefix_cache=False, gpu_memory_fraction=0.3),
                "heartfast engine, no cuda graphs": Engine(lm, block_size=16, max_seqs=BATCH, max_batched_tokens=16384,
                                                           prefix_cache=False, gpu_memory_fraction=0.1,
                                                           cuda_graphs=False),
            }
            for impl, engine in impls.items():
                _record(suite, case, impl, _wall_ms(lambda: _engine_tokens(engine, prompts, budgets, penalty)), useful)
            impls.clear()
            torch.cuda.empty_cache()
            _record(suite, case, "transformers generate",
                    _wall_ms(lambda: _generate(hf, prompts, max(budgets), penalty)), useful)


def prefix_workload(vocab: int, rng: np.random.Generator, ecgs: int = 16, questions: int = 6,
                    system: int = 64, ecg_tokens: int = 512) -> list[list[int]]:
    """Prompts of `questions` questions on each of `ecgs` ECGs: system prompt, the ECG's tokens, a question."""
    head = rng.integers(3, vocab, system).tolist()
    prompts = []
    for _ in range(ecgs):
        ecg = rng.integers(3, vocab, ecg_tokens).tolist()
        prompts += [head + ecg + rng.integers(3, vocab, int(rng.integers(12, 33))).tolist() for _ in range(questions)]
    return prompts


def _prefix_cache_ms(lm: DecoderLM, on: bool) -> tuple[float, EngineStats]:
    """Median ms of the prefix workload. Each run gets fresh tokens (its own system prompt and ECGs): one
    engine serves all runs, and a run must not find the previous run's prompts in its cache."""
    rng = np.random.default_rng(2)                          # the same workloads with the cache on and off
    engine = Engine(lm, block_size=16, max_seqs=BATCH, max_batched_tokens=16384, prefix_cache=on,
                    gpu_memory_fraction=0.3)

    def run() -> None:
        prompts = prefix_workload(SHAPE["vocab_size"], rng)
        _engine_tokens(engine, prompts, [8] * len(prompts))

    return _wall_ms(run), engine.stats


def time_prefix_cache(suite) -> None:
    with tempfile.TemporaryDirectory() as directory:
        _, lm = _save(SHAPE, torch.bfloat16, directory)
        for on in (True, False):
            ms, stats = _prefix_cache_ms(lm, on)
            torch.cuda.empty_cache()
            suite.record("prefix cache, 1.1B bf16, 96 questions on 16 ECGs (6 each), 8 new tokens",
                         f"heartfast engine, prefix cache {'on' if on else 'off'}", ms,
                         useful_output_tokens_per_s=round(stats.output_tokens / (REPEATS + 1) / ms * 1e3, 1),
                         cached_prompt_tokens_per_run=stats.cached_prompt_tokens // (REPEATS + 1),
                         prompt_tokens_per_run=stats.prompt_tokens // (REPEATS + 1))


def _record(suite, case: str, impl: str, ms: float, useful_tokens: int) -> None:
    suite.record(case, impl, ms, useful_output_tokens_per_s=round(useful_tokens / ms * 1e3, 1))


def run(suite) -> None:
    if not suite.quick:   # fp32 kernels compile slowly on the GPU host; parity is also tested on CPU
        check_parity(suite)
    time_throughput(suite)
    time_prefix_cache(suite)
