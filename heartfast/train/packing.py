"""Tokenized multimodal samples and how a micro-batch of them becomes one model input.

`pack(samples)` concatenates the samples into a single row (B = 1) with `cu_seqlens` marking where each
sequence starts and position ids restarting at 0 per sequence: varlen attention keeps the sequences apart,
so no token is padding. `pad(samples)` builds the usual right-padded [B, S] batch with an attention mask
(for comparisons with libraries that only take padded batches).

Stream features travel with the sample: `signal_features` [n_signals, n, d] and `image_features`
[n_images, m, d] in order of appearance, already computed by the frozen encoders, so a training step only
runs the projectors and the LLM. With a trainable signal encoder the sample carries the encoder's inputs
instead (`signal_inputs`, one prepared recording per `<signal>` span) and the step encodes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from heartfast.model.heartcare import MultimodalBatch
from heartfast.train.losses import IGNORE_INDEX


@dataclass
class Sample:
    input_ids: list[int]
    labels: list[int]                              # IGNORE_INDEX where no loss (prompt, placeholders)
    signal_features: list[torch.Tensor]            # one [n, d] per <signal> span, in order
    image_features: list[torch.Tensor]             # one [m, d] per <image> span, in order
    signal_inputs: list[torch.Tensor] = field(default_factory=list)   # or encoder inputs per <signal> span

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def answer_tokens(self) -> int:
        """Labelled tokens that carry loss once shifted: every label except the first position's."""
        return sum(1 for y in self.labels[1:] if y != IGNORE_INDEX)


def _features(samples: list[Sample], name: str) -> torch.Tensor | None:
    rows = [f for s in samples for f in getattr(s, name)]
    if not rows:
        return None
    return torch.cat([f.reshape(-1, f.shape[-1]) for f in rows])


def pack(samples: list[Sample]) -> MultimodalBatch:
    """One packed row: input_ids/labels/positions [1, total], cu_seqlens int32 [n + 1]."""
    if not samples:
        raise ValueError("cannot pack an empty list of samples")
    lengths = torch.tensor([len(s) for s in samples])
    cu = torch.zeros(len(samples) + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    ids = torch.tensor([t for s in samples for t in s.input_ids])[None]
    labels = torch.tensor([t for s in samples for t in s.labels])[None]
    starts = torch.repeat_interleave(cu[:-1].long(), lengths)
    positions = (torch.arange(int(cu[-1])) - starts)[None]
    return MultimodalBatch(ids, labels, positions, cu, max_seqlen=int(lengths.max()),
                           signal_features=_features(samples, "signal_features"),
                           image_features=_features(samples, "image_features"),
                           signal_inputs=_inputs(samples))


def _inputs(samples: list[Sample]) -> list[torch.Tensor] | None:
    return [x for s in samples for x in s.signal_inputs] or None


def pad(samples: list[Sample], pad_id: int) -> tuple[MultimodalBatch, torch.Tensor]:
    """Right-padded [B, S] batch and its attention mask (1 = token, 0 = padding)."""
    if not samples:
        raise ValueError("cannot pad an empty list of samples")
    width = max(len(s) for s in samples)
    ids = torch.full((len(samples), width), pad_id)
    labels = torch.full((len(samples), width), IGNORE_INDEX)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for i, s in enumerate(samples):
        ids[i, :len(s)] = torch.tensor(s.input_ids)
        labels[i, :len(s)] = torch.tensor(s.labels)
        mask[i, :len(s)] = 1
    batch = MultimodalBatch(ids, labels, signal_features=_features(samples, "signal_features"),
                            image_features=_features(samples, "image_features"), signal_inputs=_inputs(samples))
    return batch, mask


def answer_tokens(samples: list[Sample]) -> int:
    return sum(s.answer_tokens for s in samples)
