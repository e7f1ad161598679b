"""Turning a batch of next-token logits into tokens, one set of sampling parameters per request.

Order follows transformers' logits processors so greedy and seeded sampling match `generate`:
repetition penalty over the request's tokens so far, then temperature, top-k, top-p.
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


def apply_repetition_penalty(logits: torch.Tensor, histories: list[list[int]],
                             penalties: list[float]) -> torch.Tensor:
    """Divide positive logits (multiply negative ones) of tokens already in each history."""
    rows = [i for i, p in enumerate(penalties) if p != 1.0 and histories[i]]
    if not rows:
        return logits
    logits = logits.clone()
    for i in rows:
        ids = torch.tensor(sorted(set(histories[i])), device=logits.device)
        picked = logits[i, ids]
        logits[i, ids] = torch.where(picked > 0, picked / penalties[i], picked * penalties[i])
    return logits


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
    """Batched sampling with per-request parameters and per-request seeded generators."""

    def __init__(self) -> None:
        self._generators: dict[int, torch.Generator] = {}

    def __call__(self, logits: torch.Tensor, params: list[SamplingParams], histories: list[list[int]],
                 request_keys: list[int]) -> list[int]:
        logits = apply_repetition_penalty(logits.float(), histories, [p.repetition_penalty for p in params])
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
