"""The paged KV cache's bookkeeping: fixed-size blocks, reference counts, and the prefix cache.

A sequence owns a block table (list of block ids). Full blocks are named by a chained hash of their
tokens (parent hash + this block's cache keys), so requests that share an ECG and prompt prefix map to
the same physical blocks and skip recomputing them. Freed blocks that carry a hash stay reusable until
memory is needed (least recently freed first), as in vLLM's prefix caching.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class OutOfBlocks(RuntimeError):
    """No free or evictable block is left; the scheduler preempts a sequence."""


def block_hashes(keys: Sequence[int], block_size: int) -> list[int]:
    """Chained hashes of the full blocks of `keys` (a partial last block has none)."""
    return extend_hashes([], keys, block_size, len(keys))


def extend_hashes(hashes: list[int], keys: Sequence[int], block_size: int, length: int) -> list[int]:
    """Append to `hashes` (the chain of the first len(hashes) blocks) those of the further full blocks of
    keys[:length]; returns `hashes`."""
    parent = hashes[-1] if hashes else 0
    for start in range(len(hashes) * block_size, length - block_size + 1, block_size):
        parent = hash((parent, tuple(keys[start:start + block_size])))
        hashes.append(parent)
    return hashes


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_cache: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_cache = enable_prefix_cache
        self.refcount = [0] * num_blocks
        self.block_hash: list[int | None] = [None] * num_blocks
        self.cached: dict[int, int] = {}                       # hash -> block id
        self.free: list[int] = list(range(num_blocks - 1, -1, -1))
        self.evictable: OrderedDict[int, None] = OrderedDict()  # hashed blocks with refcount 0
        self.hits = 0                                           # prompt tokens served from the cache
        self.high_water = 0                                     # 1 + the highest block id ever handed out

    @property
    def num_available(self) -> int:
        return len(self.free) + len(self.evictable)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _take(self) -> int:
        if self.free:
            block = self.free.pop()
        elif self.evictable:
            block, _ = self.evictable.popitem(last=False)
            del self.cached[self.block_hash[block]]
            self.block_hash[block] = None
        else:
            raise OutOfBlocks("KV cache is full")
        self.refcount[block] = 1
        self.high_water = max(self.high_water, block + 1)
        return block

    def match_prefix(self, keys: Sequence[int]) -> list[int]:
        """Cached blocks for the longest full-block prefix of `keys` (not yet referenced)."""
        if not self.enable_prefix_cache:
            return []
        blocks = []
        for h in block_hashes(keys, self.block_size):
            if h not in self.cached:
                break
            blocks.append(self.cached[h])
        return blocks

    def allocate(self, keys: Sequence[int], num_tokens: int) -> tuple[list[int], int]:
        """Block table for a new sequence whose first `num_tokens` tokens have cache keys `keys`.

        Returns (block table, number of leading tokens already in the cache). The cached count is kept
        below `num_tokens` so at least one token is computed (its logits are needed).
        """
        prefix = self.match_prefix(keys)
        while prefix and len(prefix) * self.block_size >= num_tokens:
            prefix.pop()
        fresh = self.blocks_needed(num_tokens) - len(prefix)
        reusable = sum(1 for b in prefix if self.refcount[b] == 0)
        if fresh > self.num_available - reusable:
            raise OutOfBlocks(f"need {fresh} blocks, {self.num_available - reusable} available")
        for block in prefix:
            if self.refcount[block] == 0:
                self.evictable.pop(block)
            self.refcount[block] += 1
        table = prefix + [self._take() for _ in range(fresh)]
        cached_tokens = len(prefix) * self.block_size
        self.hits += cached_tokens
        return table, cached_tokens

    def append_slot(self, table: list[int], num_tokens: int) -> None:
        """Grow `table` so it holds `num_tokens` tokens."""
        while len(table) < self.blocks_needed(num_tokens):
            table.append(self._take())

    def commit(self, table: list[int], keys: Sequence[int], num_computed: int,
               known: list[int] | None = None) -> None:
        """Name the full blocks whose KV is now computed so later requests can share them.

        `known` holds the chained hashes of the table's blocks committed earlier and is extended in place,
        so a sequence hashes each block once rather than its whole history every decode step.
        """
        if not self.enable_prefix_cache:
            return
        known = [] if known is None else known
        first = len(known)
        extend_hashes(known, keys, self.block_size, num_computed)
        for block, h in zip(table[first:], known[first:]):
            if self.block_hash[block] is None and h not in self.cached:
                self.block_hash[block] = h
                self.cached[h] = block

    def release(self, table: list[int]) -> None:
        for block in reversed(table):
            self.refcount[block] -= 1
            if self.refcount[block] == 0:
                if self.block_hash[block] is None:
                    self.free.append(block)
                else:
                    self.evictable[block] = None
        table.clear()
