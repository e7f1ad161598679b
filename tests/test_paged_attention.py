"""Paged KV cache kernels (Triton, under the interpreter) against dense attention over the same K/V."""
from __future__ import annotations

import pytest
import torch

from heartfast.kernels.paged_attention import choose_num_splits
from heartfast.ops.attention import attention_reference
from heartfast.ops.paged import gather_cache, paged_decode, paged_prefill, reshape_and_cache

TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2}
BLOCK_SIZE = 16


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


class PagedContexts:
    """Dense per-sequence K/V scattered into shuffled cache blocks, as the engine would hold them."""

    def __init__(self, lengths: list[int], kv_heads: int, head_dim: int, dtype: torch.dtype, spare_blocks: int = 3):
        self.lengths = lengths
        widths = [-(-n // BLOCK_SIZE) for n in lengths]
        max_blocks = max(widths) + 1
        num_blocks = sum(widths) + spare_blocks
        self.k_cache = torch.randn(num_blocks, BLOCK_SIZE, kv_heads, head_dim, dtype=dtype)  # garbage elsewhere
        self.v_cache = torch.randn_like(self.k_cache)
        order = torch.randperm(num_blocks).tolist()
        self.block_tables = torch.full((len(lengths), max_blocks), -1, dtype=torch.int32)
        self.keys, self.values = [], []
        for b, (n, w) in enumerate(zip(lengths, widths)):
            blocks = [order.pop() for _ in range(w)]
            self.block_tables[b, :w] = torch.tensor(blocks, dtype=torch.int32)
            k, v = torch.randn(n, kv_heads, head_dim, dtype=dtype), torch.randn(n, kv_heads, head_dim, dtype=dtype)
            for pos in range(n):
                self.k_cache[blocks[pos // BLOCK_SIZE], pos % BLOCK_SIZE] = k[pos]
                self.v_cache[blocks[pos // BLOCK_SIZE], pos % BLOCK_SIZE] = v[pos]
            self.keys.append(k)
            self.values.append(v)
        self.seq_lens = torch.tensor(lengths, dtype=torch.int32)

    def slot(self, b: int, pos: int) -> int:
        return int(self.block_tables[b, pos // BLOCK_SIZE]) * BLOCK_SIZE + pos % BLOCK_SIZE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("num_splits", [1, 3], ids=["one-chunk", "split-kv"])
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(8, 2, 64), (3, 3, 96)], ids=["gqa4-d64", "mha-d96"])
def test_decode_matches_dense_attention(heads, kv_heads, head_dim, num_splits, dtype):
    ctx = PagedContexts([1, 150, 300, 17], kv_heads, head_dim, dtype)
    q = torch.randn(len(ctx.lengths), heads, head_dim, dtype=dtype)
    out = paged_decode(q, ctx.k_cache, ctx.v_cache, ctx.block_tables, ctx.seq_lens, 0.2, num_splits=num_splits,
                       backend="triton")
    for b in range(len(ctx.lengths)):
        ref = attention_reference(q[b][None, None].double(), ctx.keys[b][None].double(),
                                  ctx.values[b][None].double(), scale=0.2)[0, 0]
        assert rel_err(out[b], ref) < TOLERANCE[dtype], f"sequence {b}"


def test_split_kv_is_chosen_for_small_batches_with_long_contexts():
    assert choose_num_splits(batch=1, kv_heads=8, max_context=8192, multiprocessors=132) > 8
    assert choose_num_splits(batch=64, kv_heads=8, max_context=8192, multiprocessors=132) == 1
    assert choose_num_splits(batch=1, kv_heads=8, max_context=200, multiprocessors=132) == 1


def test_automatic_split_matches_reference():
    ctx = PagedContexts([700, 45], 1, 64, torch.float32)
    q = torch.randn(2, 2, 64)
    out = paged_decode(q, ctx.k_cache, ctx.v_cache, ctx.block_tables, ctx.seq_lens, backend="triton")
    ref = paged_decode(q, ctx.k_cache, ctx.v_cache, ctx.block_tables, ctx.seq_lens, backend="torch")
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_cache_writes_follow_the_slot_mapping(backend):
    ctx = PagedContexts([40, 9], 2, 64, torch.float16)
    k_cache, v_cache = ctx.k_cache.clone(), ctx.v_cache.clone()
    positions = [(0, 40), (0, 41), (1, 9), (1, 10)]
    slots = torch.tensor([ctx.slot(b, p) for b, p in positions])
    slots[1] = -1  # a padding token: nothing written
    k, v = torch.randn(4, 2, 64, dtype=torch.float16), torch.randn(4, 2, 64, dtype=torch.float16)
    reshape_and_cache(k, v, k_cache, v_cache, slots, backend=backend)
    expected_k, expected_v = ctx.k_cache.clone(), ctx.v_cache.clone()
    for i in (0, 2, 3):
        block, offset = divmod(int(slots[i]), BLOCK_SIZE)
        expected_k[block, offset], expected_v[block, offset] = k[i], v[i]
    assert torch.equal(k_cache, expected_k) and torch.equal(v_cache, expected_v)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("prefix,new", [
    ([30, 0, 100], [7, 21, 90]),                     # a short chunk, a fresh prompt, a long chunk after a long prefix
    ([30, 0, 100, 45, 64, 5], [7, 21, 1, 1, 90, 1]),  # decode rows riding along (one batched call on torch)
], ids=["chunks", "chunks-and-decode-rows"])
def test_prefill_over_cached_prefix_plus_new_chunk(dtype, backend, prefix, new):
    heads, kv_heads, head_dim = 4, 2, 64
    ctx = PagedContexts([p + n for p, n in zip(prefix, new)], kv_heads, head_dim, dtype)
    k_cache, v_cache = ctx.k_cache.clone(), ctx.v_cache.clone()
    for b, (p, n) in enumerate(zip(prefix, new)):  # the new tokens' K/V are not in the cache yet
        for pos in range(p, p + n):
            block, offset = divmod(ctx.slot(b, pos), BLOCK_SIZE)
            k_cache[block, offset] = v_cache[block, offset] = 0
    new_k = torch.cat([ctx.keys[b][p:] for b, p in enumerate(prefix)])
    new_v = torch.cat([ctx.values[b][p:] for b, p in enumerate(prefix)])
    slots = torch.tensor([ctx.slot(b, pos) for b, (p, n) in enumerate(zip(prefix, new)) for pos in range(p, p + n)])
    reshape_and_cache(new_k, new_v, k_cache, v_cache, slots, backend="triton")
    cu = torch.tensor([0, *torch.tensor(new).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(sum(new), heads, head_dim, dtype=dtype)
    out = paged_prefill(q, k_cache, v_cache, ctx.block_tables, cu, ctx.seq_lens, backend=backend)
    for b in range(len(new)):
        ref = attention_reference(q[None, cu[b]:cu[b + 1]].double(), ctx.keys[b][None].double(),
                                  ctx.values[b][None].double(), causal=True)[0]
        assert rel_err(out[cu[b]:cu[b + 1]], ref) < TOLERANCE[dtype], f"sequence {b}"


def test_reference_paths_agree_with_dense_attention():
    ctx = PagedContexts([33, 5], 1, 64, torch.float64)
    assert torch.equal(gather_cache(ctx.k_cache, ctx.block_tables[0], 33), ctx.keys[0])
    q = torch.randn(2, 2, 64, dtype=torch.float64)
    out = paged_decode(q, ctx.k_cache, ctx.v_cache, ctx.block_tables, ctx.seq_lens, backend="torch")
    ref = attention_reference(q[1][None, None], ctx.keys[1][None], ctx.values[1][None])[0, 0]
    assert torch.allclose(out[1], ref)


def test_cache_that_does_not_fit_the_queries_is_rejected():
    ctx = PagedContexts([5], 3, 64, torch.float32)
    with pytest.raises(ValueError, match="do not fit the cache"):
        paged_decode(torch.randn(1, 4, 64), ctx.k_cache, ctx.v_cache, ctx.block_tables, ctx.seq_lens)
    with pytest.raises(ValueError, match="int32"):
        paged_decode(torch.randn(1, 3, 64), ctx.k_cache, ctx.v_cache, ctx.block_tables.long(), ctx.seq_lens)
    with pytest.raises(ValueError, match="more new tokens than its seq_lens"):
        paged_prefill(torch.randn(6, 3, 64), ctx.k_cache, ctx.v_cache, ctx.block_tables,
                      torch.tensor([0, 6], dtype=torch.int32), ctx.seq_lens)
