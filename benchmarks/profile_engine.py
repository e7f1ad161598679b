"""Where the engine's wall time goes on the GPU: per-phase times, then torch.profiler's top kernels.

    python3 benchmarks/profile_engine.py [--rows 25]

Same model and workloads as benchmarks/gpu/engine.py (1.1B Llama bf16, batch 64, uniform and bench-like).
Each phase (request preparation, scheduling, step inputs, model forward split into CUDA-graph decode /
eager decode / prefill, sampling, bookkeeping) is timed with a device synchronisation around it, so its
time includes the GPU work it launched; the unsynchronised wall time of the whole run is printed beside.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_tree import use_source_tree  # noqa: E402

use_source_tree()
import heartfast.engine.engine as engine_module  # noqa: E402
from gpu.engine import BATCH, SHAPE, _engine_tokens, _save, _workload  # noqa: E402
from heartfast.engine.cuda_graphs import DecodeGraphs  # noqa: E402
from heartfast.engine.engine import Engine  # noqa: E402
from heartfast.engine.sampling import Sampler  # noqa: E402
from heartfast.engine.scheduler import Scheduler  # noqa: E402

TOTALS: dict[str, float] = collections.defaultdict(float)
COUNTS: dict[str, int] = collections.defaultdict(int)


def timed(name, fn):
    def wrapper(*args, **kwargs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        torch.cuda.synchronize()
        TOTALS[name] += time.perf_counter() - start
        COUNTS[name] += 1
        return out
    return wrapper


def forward_phase(fn):
    def wrapper(self, chunks, prompt_embeds):
        kind = "prefill" if any(c.length > 1 for c in chunks) else "decode"
        return timed(f"forward {kind}", fn)(self, chunks, prompt_embeds)
    return wrapper


def instrument() -> None:
    Engine._prepare = timed("prepare requests", Engine._prepare)
    Engine._forward = forward_phase(Engine._forward)
    Engine._finished = timed("finish checks", Engine._finished)
    Scheduler.schedule = timed("schedule", Scheduler.schedule)
    Scheduler.complete = timed("complete chunks", Scheduler.complete)
    Sampler.__call__ = timed("sample", Sampler.__call__)
    DecodeGraphs.replay = timed("  of which graph replay", DecodeGraphs.replay)
    engine_module.build_step = timed("  of which build_step", engine_module.build_step)


def phases(engine: Engine, prompts, budgets) -> None:
    TOTALS.clear()
    COUNTS.clear()
    torch.cuda.synchronize()
    start = time.perf_counter()
    _engine_tokens(engine, prompts, budgets)
    torch.cuda.synchronize()
    wall = (time.perf_counter() - start) * 1e3
    print(f"  synchronised wall {wall:.1f} ms over {engine.stats.steps} steps so far")
    for name, seconds in sorted(TOTALS.items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {seconds * 1e3:9.1f} ms  {COUNTS[name]:6d} calls  {seconds * 1e6 / COUNTS[name]:9.1f} us/call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        _, lm = _save(SHAPE, torch.bfloat16, directory)
        engine = Engine(lm, block_size=16, max_seqs=BATCH, max_batched_tokens=16384, prefix_cache=False,
                        gpu_memory_fraction=0.3)
        for kind in ("uniform", "bench-like"):
            prompts, budgets = _workload(kind, SHAPE["vocab_size"], rng)
            _engine_tokens(engine, prompts, budgets)          # warm-up: compiles and tunes
            torch.cuda.synchronize()
            start = time.perf_counter()
            _engine_tokens(engine, prompts, budgets)
            torch.cuda.synchronize()
            print(f"==== {kind}: unsynchronised wall {(time.perf_counter() - start) * 1e3:.1f} ms")
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                    torch.profiler.ProfilerActivity.CUDA]) as prof:
                _engine_tokens(engine, prompts, budgets)
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.rows,
                                            max_name_column_width=60))
        instrument()
        rng = np.random.default_rng(0)
        for kind in ("uniform", "bench-like"):
            prompts, budgets = _workload(kind, SHAPE["vocab_size"], rng)
            print(f"==== {kind}: phases (each synchronised)")
            phases(engine, prompts, budgets)


if __name__ == "__main__":
    main()
