"""CUDA graphs of the decode step: one captured graph per padded batch size, replayed each decode step.

A decode step of a small model is launch-bound: every layer issues ~10 kernels of a few microseconds each
(a 1B decoder at batch 64 needs ~0.7 ms of weight reads but ~250 launches). A graph replays them all with
one launch. Shapes must be static, so each graph is captured for a batch size from `BATCH_SIZES` with
static input buffers (token ids, positions, slots, full-width block tables, context lengths) and a
context bound of the model's window; a step of n sequences replays the smallest graph with room for n,
its spare rows writing nowhere (slot -1) and reading one cached token.
"""
from __future__ import annotations

import torch

from heartfast.engine.runner import KVCache, PagedKV, StepInputs
from heartfast.model.llm import DecoderLM

BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


class DecodeGraphs:
    """Captured decode steps of `lm` over `cache` for batches up to `max_seqs` sequences."""

    def __init__(self, lm: DecoderLM, cache: KVCache, max_seqs: int, max_model_len: int) -> None:
        device = cache.k[0].device
        self.lm, self.cache = lm, cache
        self.max_len = max_model_len
        self.width = -(-max_model_len // cache.block_size)
        self.sizes = [b for b in BATCH_SIZES if b < max_seqs] + [max_seqs]
        top = self.sizes[-1]
        self.ids = torch.zeros(top, dtype=torch.long, device=device)
        self.positions = torch.zeros(1, top, dtype=torch.long, device=device)
        self.slots = torch.full((top,), -1, dtype=torch.int64, device=device)
        self.tables = torch.zeros(top, self.width, dtype=torch.int32, device=device)
        self.seq_lens = torch.ones(top, dtype=torch.int32, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}
        self._capture()

    def _step(self, n: int) -> StepInputs:
        return StepInputs(positions=self.positions[:, :n], slot_mapping=self.slots[:n], block_tables=self.tables[:n],
                          seq_lens=self.seq_lens[:n], cu_seqlens_q=torch.arange(n + 1, dtype=torch.int32,
                                                                               device=self.ids.device),
                          max_seqlen_q=1, max_seq_len=self.max_len, decode_only=True, fresh=False,
                          last_rows=torch.arange(n, device=self.ids.device))

    def _run(self, n: int) -> torch.Tensor:
        hidden = self.lm.decode(input_ids=self.ids[None, :n], positions=self.positions[:, :n],
                                kv=PagedKV(self.cache, self._step(n)))
        return self.lm.lm_head(hidden[0]).float()

    @torch.inference_mode()
    def _capture(self) -> None:
        """Largest batch first, so the smaller graphs reuse its memory pool."""
        pool = None
        for n in reversed(self.sizes):
            self._run(n)                      # eager warm-up: Triton compiles and autotunes outside the capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.logits[n] = self._run(n)
            pool = graph.pool()
            self.graphs[n] = graph
        torch.cuda.synchronize()

    def fits(self, n: int, max_seq_len: int) -> bool:
        return n <= self.sizes[-1] and max_seq_len <= self.max_len

    def replay(self, ids: torch.Tensor, step: StepInputs) -> torch.Tensor:
        """Logits [n, vocab] of a decode step of n sequences (ids [n], `step` built by `build_step`)."""
        n = ids.shape[0]
        size = next(b for b in self.sizes if b >= n)
        width = step.block_tables.shape[1]
        self.ids[:n].copy_(ids)
        self.positions[:, :n].copy_(step.positions)
        self.slots[:n].copy_(step.slot_mapping)
        self.slots[n:size].fill_(-1)
        self.tables[:n, :width].copy_(step.block_tables)
        self.seq_lens[:n].copy_(step.seq_lens)
        self.seq_lens[n:size].fill_(1)
        self.graphs[size].replay()
        return self.logits[size][:n]
