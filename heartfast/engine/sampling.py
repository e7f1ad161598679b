"""Turning a batch of next-token logits into tokens, one set of sampling parameters per request.

Order follows transformers' logits processors so greedy and seeded sampling match `generate`:
repetition penalty over the request's tokens so far (`SeenTokens`, on the device), then temperature,
top-k, top-p.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 40
    temperature: float = 0.0          # 0 = greedy
    top_k: int = 0                    # 0 = off
    top_p: float = 1.0                # 1 = off
    repetition_penalty: float = 1.0   # 1 = off; > 1 discourages tokens already present
    stop: tuple[str, ...] = field(default_factory=tuple)  # stop strings (checked on the decoded text)
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError(f"invalid sampling parameters: {self}")


def on_device(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small host list as a tensor on `device`. On CUDA through pinned memory without blocking: a step's
    kernels are queued by then, and a blocking copy would wait for all of them (no lookahead overlap)."""
    tensor = torch.tensor(values, dtype=dtype)
    return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor


class SeenTokens:
    """Per request, which token ids its prompt and answer hold so far: one row of a [rows, vocab] bool tensor
    on the logits' device. The repetition penalty (the papers' evaluation decodes greedily with 1.1) is then
    one masked op over the batch, and each step's tokens are marked on the device: a penalised greedy step
    needs no per-request loop and no host round trip, so it keeps the engine's device path (lookahead).
    A row is filled from the request's history when it is first penalised and lives until `release`."""

    def __init__(self) -> None:
        self._rows: dict[int, int] = {}
        self._free: list[int] = []
        self._mask: torch.Tensor | None = None

    def penalize(self, logits: torch.Tensor, keys: list[int], histories: list[list[int]],
                 penalties: list[float]) -> tuple[torch.Tensor, "Marks | None"]:
        """Divide positive logits (multiply negative ones) of tokens each request has seen, as transformers'
        RepetitionPenaltyLogitsProcessor does; also returns where to `mark` this step's tokens."""
        chosen = [i for i, p in enumerate(penalties) if p != 1.0]
        if not chosen:
            return logits, None
        self._admit([keys[i] for i in chosen], [histories[i] for i in chosen], logits)
        device = logits.device
        rows = on_device([self._rows[keys[i]] for i in chosen], torch.long, device)
        where = None if len(chosen) == len(keys) else on_device(chosen, torch.long, device)
        part = logits if where is None else logits.index_select(0, where)
        penalty = on_device([penalties[i] for i in chosen], logits.dtype, device)[:, None]
        # transformers divides by a Python float, which CUDA computes as a product with its float reciprocal
        # (one bit from true division): do the same there, so greedy ties break alike
        down = part * penalty.reciprocal() if part.is_cuda else part / penalty
        part = torch.where(self._mask.index_select(0, rows), torch.where(part > 0, down, part * penalty), part)
        return (part if where is None else logits.index_copy(0, where, part)), Marks(rows, where)

    def mark(self, marks: "Marks", tokens: torch.Tensor) -> None:
        """Record each penalised request's new token (tokens [batch], on the device)."""
        picked = tokens if marks.where is None else tokens.index_select(0, marks.where)
        self._mask[marks.rows, picked] = True

    def release(self, key: int) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            self._free.append(row)

    def _admit(self, keys: list[int], histories: list[list[int]], like: torch.Tensor) -> None:
        """Rows for the requests seen for the first time, filled from their histories in one write."""
        new = [(k, h) for k, h in zip(keys, histories) if k not in self._rows]
        if not new:
            return
        need = len(new) - len(self._free)
        if need > 0:                                               # grow by doubling
            have = 0 if self._mask is None else self._mask.shape[0]
            size = max(2 * have, have + need, 8)
            grown = torch.zeros(size, like.shape[-1], dtype=torch.bool, device=like.device)
            if have:
                grown[:have] = self._mask
            self._mask = grown
            self._free += range(size - 1, have - 1, -1)
        rows = [self._free.pop() for _ in new]
        self._rows.update((k, r) for (k, _), r in zip(new, rows))
        vocab = like.shape[-1]   # a looked-ahead token (-1) is not known yet; ids past the logits have none
        ids = [[t for t in h if 0 <= t < vocab] for _, h in new]
        self._mask.index_fill_(0, on_device(rows, torch.long, like.device), False)   # a reused row forgets
        flat_rows = on_device([r for r, h in zip(rows, ids) for _ in h], torch.long, like.device)
        self._mask[flat_rows, on_device([t for h in ids for t in h], torch.long, like.device)] = True


@dataclass
class Marks:
    """Where one step's tokens go in SeenTokens: the requests' rows, and their places in the batch (None: all)."""

    rows: torch.Tensor
    where: torch.Tensor | None


def filter_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask (to -inf) tokens outside each row's top-k and nucleus top-p; k = 0 / p = 1 leave a row alone."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
    k = torch.where(top_k > 0, top_k, logits.shape[-1]).unsqueeze(1)
    drop = ranks >= k
    probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs            # mass strictly above each token
    drop |= (before > top_p.unsqueeze(1)) & (ranks > 0)
    return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))


class Sampler:
    """Batched sampling with per-request parameters and per-request seeded generators; the repetition
    penalty (`seen`) is applied to the logits before, on the device."""

    def __init__(self) -> None:
        self._generators: dict[int, torch.Generator] = {}
        self.seen = SeenTokens()

    def __call__(self, logits: torch.Tensor, params: list[SamplingParams], request_keys: list[int]) -> list[int]:
        logits = logits.float()
        greedy = [p.temperature == 0 for p in params]
        tokens = logits.argmax(dim=-1)
        if all(greedy):
            return tokens.tolist()
        temps = torch.tensor([p.temperature or 1.0 for p in params], device=logits.device).unsqueeze(1)
        top_k = torch.tensor([p.top_k for p in params], device=logits.device)
        top_p = torch.tensor([p.top_p for p in params], device=logits.device)
        probs = filter_top_k_top_p(logits / temps, top_k, top_p).softmax(dim=-1)
        out = tokens.tolist()
        for i, p in enumerate(params):
            if not greedy[i]:
                out[i] = int(torch.multinomial(probs[i], 1, generator=self._generator(request_keys[i], p, probs)))
        return out

    def _generator(self, key: int, params: SamplingParams, like: torch.Tensor) -> torch.Generator | None:
        if params.seed is None:
            return None
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=like.device).manual_seed(params.seed)
        return self._generators[key]

    def release(self, key: int) -> None:
        self._generators.pop(key, None)
        self.seen.release(key)
