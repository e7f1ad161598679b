"""CPU tokenize throughput of the whole Beat tokenizer (beat-4s): heartfast vs a plain eager version.

Both run the same weights on the same 64 windows of 4 s (12 leads, 250 Hz) and must give the same codes.
heartfast: `BeatTokenizer.encode` (attention through heartfast.ops = fused SDPA on CPU, the quantizer's
matmul-form reference). Plain eager: the same layers written the textbook way, attention as
softmax(QK^T / sqrt(d)) V in explicit matmuls and the quantizer as `torch.cdist` + `argmin` per level.
Run:
    .venv/bin/python -m pytest benchmarks/test_bench_beat.py --benchmark-group-by=group -q
windows/s = 64 / min time (the CPU is shared; the minimum is the least disturbed), in extra_info.
"""
from __future__ import annotations

import pytest
import torch

from heartfast.model.beat import SAMPLE_RATE, BeatConfig, BeatTokenizer, Block

WINDOWS = 64


def _eager_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    b, s, _ = x.shape
    q, k, v = block.qkv(block.norm1(x)).view(b, s, 3, block.heads, block.head_dim).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / block.head_dim ** 0.5, dim=-1)
    x = x + block.proj((weights @ v).transpose(1, 2).reshape(b, s, -1))
    return x + block.mlp(block.norm2(x))


@torch.no_grad()
def eager_encode(model: BeatTokenizer, signals: torch.Tensor) -> torch.Tensor:
    """The tokenizer with textbook attention and a cdist + argmin quantizer; codes [B, W, queries, levels]."""
    c = model.config
    windows = model.windows(signals, SAMPLE_RATE)
    b, w = windows.shape[:2]
    patches = windows.reshape(b * w, c.leads, c.patches, c.patch).permute(0, 2, 1, 3).reshape(b * w, c.patches, -1)
    tokens = model.patch_embed(patches) + model.positions
    queries = model.queries.expand(b * w, -1, -1)
    if c.local_start:   # each query starts from its segment's mean patch token
        queries = queries + tokens.reshape(b * w, c.queries, -1, c.dim).mean(2)
    x = torch.cat([tokens, queries], dim=1)
    for block in model.encoder.blocks:
        x = _eager_block(block, x)
    residual = model.encoder.norm(x)[:, c.patches:].reshape(-1, c.dim)
    codes = []
    for level in range(c.levels):
        book = model.quantizer.codebook[0 if c.shared_codebook else level]
        idx = torch.cdist(residual, book).argmin(dim=1)
        residual = residual - book[idx]
        codes.append(idx)
    return torch.stack(codes, dim=1).reshape(b, w, c.queries, c.levels)


@pytest.fixture(scope="module")
def setup() -> tuple[BeatTokenizer, torch.Tensor]:
    torch.manual_seed(0)
    model = BeatTokenizer(BeatConfig.preset("beat-4s")).eval()
    signals = torch.randn(WINDOWS, 12, model.config.window_samples)
    model.train()(signals[:32], torch.randn(32, 12, model.config.predict_samples))  # data-initialised codebook
    model.eval()
    return model, signals


@pytest.mark.benchmark(group="beat-4s tokenize 64 windows (CPU)")
def test_heartfast_encode(benchmark, setup):
    model, signals = setup
    codes = benchmark(model.encode, signals, SAMPLE_RATE)
    assert codes.shape == (WINDOWS, 1, 20, 2)
    benchmark.extra_info["windows_per_s"] = round(WINDOWS / benchmark.stats.stats.min, 1)  # min: shared CPU


@pytest.mark.benchmark(group="beat-4s tokenize 64 windows (CPU)")
def test_plain_eager_encode(benchmark, setup):
    model, signals = setup
    codes = benchmark(eager_encode, model, signals)
    agree = (codes == model.encode(signals, SAMPLE_RATE)).float().mean().item()
    assert agree > 0.99, f"eager and heartfast codes agree on only {agree:.1%}"
    benchmark.extra_info["windows_per_s"] = round(WINDOWS / benchmark.stats.stats.min, 1)  # min: shared CPU
