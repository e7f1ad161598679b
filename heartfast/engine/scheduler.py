"""Continuous batching: which sequences run in the next model step, and how many tokens each.

Every step has a token budget. Running sequences go first (a decode is one token; an unfinished prefill
continues in chunks), then waiting requests are admitted while the budget, the sequence limit and the KV
cache allow. When a decode needs a block and none is left, the most recently admitted sequence is
preempted: its blocks are released and it is recomputed later (its tokens so far are kept).
A waiting request whose next uncached prompt block is being computed by a sequence in flight waits for
it, so that it reuses those blocks from the prefix cache instead of computing them again: Heartcare-Bench's
questions share the system prompt across all ECGs and the ECG's tokens within each ECG's questions.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from heartfast.engine.blocks import BlockManager, OutOfBlocks, block_hashes
from heartfast.engine.sampling import SamplingParams


@dataclass(eq=False)
class Sequence:
    """One request in flight: its tokens, KV blocks and progress. Compared by identity: the scheduler's
    membership tests and removals would otherwise compare every field, token lists included."""

    request_id: str
    key: int                               # unique small integer (sampler generators, hashing)
    prompt_ids: list[int]
    params: SamplingParams
    cache_keys: list[int]                  # per prompt token: token id, or a content key for ECG/image slots
    output_ids: list[int] = field(default_factory=list)
    block_table: list[int] = field(default_factory=list)
    committed_hashes: list[int] = field(default_factory=list)   # chained hashes of the blocks committed so far
    num_computed: int = 0                  # tokens whose K/V are in the cache
    finished: bool = False
    finish_reason: str = ""
    pending: bool = False                  # the last token is a placeholder for one still on the device
    _prompt_hashes: list[int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # prompt + output, kept as growing lists: a decode step reads them for every running sequence
        self.token_ids: list[int] = self.prompt_ids + self.output_ids
        self.keys: list[int] = self.cache_keys + self.output_ids

    def append(self, token: int) -> None:
        self.output_ids.append(token)
        self.token_ids.append(token)
        self.keys.append(token)

    def append_pending(self) -> None:
        """Hold the place of a token sampled on the device but not read yet (the engine's lookahead)."""
        self.append(-1)
        self.pending = True

    def resolve(self, token: int) -> None:
        self.output_ids[-1] = self.token_ids[-1] = self.keys[-1] = token
        self.pending = False

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    def prompt_hashes(self, block_size: int) -> list[int]:
        """Chained hashes of the prompt's full blocks (the prompt never changes, so computed once)."""
        if self._prompt_hashes is None:
            self._prompt_hashes = block_hashes(self.cache_keys, block_size)
        return self._prompt_hashes


@dataclass
class Chunk:
    """`length` tokens of `seq` starting at position `start` are computed this step."""

    seq: Sequence
    start: int
    length: int

    @property
    def samples(self) -> bool:
        """True when this chunk reaches the sequence's last token, so its logits give the next token."""
        return self.start + self.length == self.seq.num_tokens


class Scheduler:
    def __init__(self, blocks: BlockManager, max_batched_tokens: int = 2048, max_seqs: int = 64) -> None:
        self.blocks = blocks
        self.max_batched_tokens, self.max_seqs = max_batched_tokens, max_seqs
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.preemptions = 0

    def add(self, seq: Sequence) -> None:
        needed = self.blocks.blocks_needed(seq.num_tokens + 1)
        if needed > self.blocks.num_blocks:
            raise ValueError(f"request {seq.request_id}: {seq.num_tokens} tokens need {needed} KV blocks, "
                             f"the cache has {self.blocks.num_blocks}")
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> list[Chunk]:
        budget, chunks = self.max_batched_tokens, []
        preempted_before = self.preemptions
        for seq in list(self.running):
            if self.preemptions != preempted_before and seq not in self.running:   # preempted for an earlier one
                continue
            remaining = seq.num_tokens - seq.num_computed
            if remaining == 1 and not self._make_room(seq):
                continue
            length = min(remaining, budget)
            if length > 0:
                chunks.append(Chunk(seq, seq.num_computed, length))
                budget -= length
        in_flight = self._blocks_in_flight() if self.blocks.enable_prefix_cache else set()
        deferred: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.max_seqs:
            seq = self.waiting.popleft()
            if in_flight and self._next_block_in_flight(seq, in_flight):
                deferred.append(seq)      # its next prefix block is being computed right now: reuse it later
                continue
            try:
                seq.block_table, seq.num_computed = self.blocks.allocate(seq.keys, seq.num_tokens)
            except OutOfBlocks:
                self.waiting.appendleft(seq)
                break
            self.running.append(seq)
            if self.blocks.enable_prefix_cache:
                in_flight.update(self._uncomputed_prompt_blocks(seq))
            length = min(seq.num_tokens - seq.num_computed, budget)
            chunks.append(Chunk(seq, seq.num_computed, length))
            budget -= length
        self.waiting.extendleft(reversed(deferred))
        return chunks

    def _blocks_in_flight(self) -> set[int]:
        """Hashes of prompt blocks that running sequences have yet to compute."""
        return {h for seq in self.running for h in self._uncomputed_prompt_blocks(seq)}

    def _uncomputed_prompt_blocks(self, seq: Sequence) -> list[int]:
        size = self.blocks.block_size
        return seq.prompt_hashes(size)[seq.num_computed // size:]

    def _next_block_in_flight(self, seq: Sequence, in_flight: set[int]) -> bool:
        """Whether `seq`'s first prompt block missing from the cache is being computed by another sequence."""
        for h in seq.prompt_hashes(self.blocks.block_size):
            if h not in self.blocks.cached:
                return h in in_flight
        return False

    def _make_room(self, seq: Sequence) -> bool:
        """Ensure `seq` has a slot for its next token, preempting later sequences if needed."""
        while True:
            try:
                self.blocks.append_slot(seq.block_table, seq.num_tokens)
                return True
            except OutOfBlocks:
                victim = self.running[-1]
                self._preempt(victim)
                if victim is seq:
                    return False

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.release(seq.block_table)
        seq.num_computed = 0
        seq.committed_hashes.clear()
        self.waiting.appendleft(seq)
        self.preemptions += 1

    def complete(self, chunk: Chunk) -> None:
        """Record that a chunk's K/V are written; name its full blocks for the prefix cache."""
        chunk.seq.num_computed = chunk.start + chunk.length
        self.blocks.commit(chunk.seq.block_table, chunk.seq.keys, chunk.seq.num_computed,
                           chunk.seq.committed_hashes)

    def finish(self, seq: Sequence, reason: str) -> None:
        seq.finished, seq.finish_reason = True, reason
        self.running.remove(seq)
        self.blocks.release(seq.block_table)

    def abort(self) -> list[Sequence]:
        """Drop every unfinished sequence (a run that stopped on an error): their blocks go back to the cache."""
        dropped = [*self.running, *self.waiting]
        for seq in list(self.running):
            self.finish(seq, "abort")
        self.waiting.clear()
        return dropped
