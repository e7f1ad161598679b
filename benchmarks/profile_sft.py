"""Where an sft step's GPU time goes: torch.profiler's top kernels for heartfast's step and the peft loop.

    python3 benchmarks/profile_sft.py [--rows 25]

Same model, data and batch as benchmarks/gpu/train.py (1.1B Llama, LoRA r64, 16 samples, bf16); three
warm-up steps, then two profiled steps each. Prints self CUDA time per kernel, largest first, after a line
that says whether the step is bound by the host: unprofiled wall time per step against the GPU's busy
time (kernel, copy and memset times summed; one stream, so no overlap), kernel launches and host syncs
per step. On 2026-11-23 heartfast's step took 270 ms of wall time for ~189 ms of kernels, the peft loop's
495 ms for ~485 ms.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_tree import use_source_tree  # noqa: E402

use_source_tree()
from gpu.train import ALPHA, BATCH, DROPOUT, R, _checkpoint, _peft, make_samples  # noqa: E402
from sft_setup import sft_trainer  # noqa: E402


LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")  # Triton: cuLaunchKernelEx
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
STEPS = 2


def profile(name: str, step, rows: int) -> None:
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - start) * 1000 / STEPS
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(STEPS):
            step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    busy_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    launches = sum(e.count for e in events if e.key in LAUNCHES)
    syncs = sum(e.count for e in events if e.key in SYNCS)
    print(f"==== {name}: {wall_ms:.1f} ms a step unprofiled; kernels {busy_us / 1000 / STEPS:.1f} ms a step "
          f"(GPU busy {busy_us / 10 / STEPS / wall_ms:.0f}%), {launches // STEPS} launches and "
          f"{syncs // STEPS} host syncs a step")
    print(events.table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    data = make_samples(4 * BATCH, 200, 1000)
    with tempfile.TemporaryDirectory() as directory, tempfile.TemporaryDirectory() as out:
        hf = _checkpoint(directory)
        trainer = sft_trainer(directory, data, out, R, ALPHA, DROPOUT, BATCH)
        profile("heartfast sft (packed)", trainer.train_step, args.rows)
        del trainer
        step, _ = _peft(hf, data)
        profile("transformers+peft (padded)", step, args.rows)


if __name__ == "__main__":
    main()
