"""CPU cost of DSPA's projection step: heartfast's `dual_projection` (on CPU: the torch reference, per-stream
`index_copy`, no concatenation) vs the eager formulation (two MLPs, torch.cat of both streams' tokens, one
scatter). Same weights, same rows, same output. 8 ECGs (20 Beat latents × 128, 12 crop vectors × 1152),
H = 512, fp32, forward only. The fused grouped kernel itself is measured on the GPU
(benchmarks/gpu/projection.py); on CPU both paths are plain torch, so expect a ratio near 1.
    .venv/bin/python -m pytest benchmarks/test_bench_projection.py --benchmark-group-by=group -q
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu.projection import _eager_args, eager, flops, make_case, streams  # noqa: E402

from heartfast.ops.projection import dual_projection  # noqa: E402


@pytest.fixture(scope="module")
def case() -> dict:
    torch.manual_seed(0)
    return make_case(512, torch.float32, "cpu", ecgs=8, latents=20, crops=12, seq=96)


@pytest.mark.benchmark(group="dual projection, 8 ECGs, H=512, fp32 CPU")
def test_heartfast_dual_projection(benchmark, case):
    with torch.no_grad():
        out = benchmark(lambda: dual_projection(case["embeds"], streams(case), backend="torch"))
        torch.testing.assert_close(out, eager(*_eager_args(case)))
    benchmark.extra_info["GFLOP"] = flops(case) / 1e9


@pytest.mark.benchmark(group="dual projection, 8 ECGs, H=512, fp32 CPU")
def test_eager_cat_and_scatter(benchmark, case):
    with torch.no_grad():
        benchmark(lambda: eager(*_eager_args(case)))
    benchmark.extra_info["GFLOP"] = flops(case) / 1e9
