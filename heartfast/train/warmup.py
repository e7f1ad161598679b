"""Signal-encoder warm-up: before instruction tuning, a trainable signal encoder learns to tell the answers of
the training split's closed questions apart through a small classifier head, discarded afterwards.

Why: a decoder that starts random (the tiny presets) does not learn, within a short sft budget, to read rhythm
from a random encoder's tokens; it answers from the options instead (eliminating statements that are never
correct, preferring the majority answer; docs/training.md). A head that reads the encoder's tokens directly
(mean-pooled, one softmax per question type) gives the encoder a short, strong signal for what the questions
ask, and the decoder then learns to read features that already carry it. Only training-split items are used;
the targets are their correct options, so nothing beyond the instruction data is needed.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from tqdm.auto import tqdm

from heartfast.instruct.items import LETTERS, Item
from heartfast.model.heartcare import HeartcareGPT


class AnswerHead(nn.Module):
    """Encoder tokens [B, n, d] -> one logit vector per question type: a 2-layer Transformer, mean-pooled."""

    def __init__(self, dim: int, classes: list[int], tokens: int, width: int = 64) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.LayerNorm(width))
        self.positions = nn.Parameter(torch.randn(tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, 0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.heads = nn.ModuleList(nn.Linear(width, n) for n in classes)

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        pooled = self.encoder(self.inp(tokens) + self.positions[:tokens.shape[1]]).mean(1)
        return [head(pooled) for head in self.heads]


def answer_targets(items: list[Item]) -> tuple[list[str], torch.Tensor, list[str], list[int]]:
    """From the training split's single-record closed items: (record ids, targets [R, tasks] holding each
    record's answer index per question type or -1, the question types, the answers each type has)."""
    answers: dict[str, dict[str, int]] = defaultdict(dict)
    per_record: dict[str, dict[str, str]] = defaultdict(dict)
    for item in items:
        if item.split != "train" or not item.correct or len(item.record_ids) != 1:
            continue
        text = item.options[LETTERS.index(item.correct)]
        per_record[item.record_ids[0]].setdefault(item.task, text)
        answers[item.task].setdefault(text, len(answers[item.task]))
    tasks = sorted(answers)
    records = sorted(per_record)
    targets = torch.tensor([[answers[t][per_record[r][t]] if t in per_record[r] else -1 for t in tasks]
                            for r in records], dtype=torch.long).reshape(len(records), len(tasks))
    return records, targets, tasks, [len(answers[t]) for t in tasks]


def warm_up_signal_encoder(model: HeartcareGPT, inputs: dict[str, torch.Tensor], items: list[Item], steps: int,
                           batch_size: int = 32, lr: float = 1e-3, seed: int = 0, progress: bool = True) -> dict:
    """Train the signal encoder (with a throw-away `AnswerHead`) for `steps` on the records' prepared inputs
    (`FeatureCache.signal` of a trainable encoder). Deterministic for a seed, so every DDP rank and a resumed
    run reach the same encoder. Returns {"steps", "records", "tasks", "final_loss"}."""
    if not model.signal_encoder_trainable:
        raise ValueError("the warm-up trains the signal encoder: call model.train_signal_encoder() first")
    records, targets, tasks, classes = answer_targets(items)
    keep = [i for i, r in enumerate(records) if r in inputs]
    records, targets = [records[i] for i in keep], targets[keep]
    if not records or steps <= 0:
        return {"steps": 0, "records": 0, "tasks": tasks}
    device = next(model.llm.parameters()).device
    shapes: dict[tuple, list[int]] = defaultdict(list)   # one batch draws from one input shape
    for i, r in enumerate(records):
        shapes[tuple(inputs[r].shape)].append(i)
    groups = list(shapes.values())
    sizes = torch.tensor([len(g) for g in groups], dtype=torch.float)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        tokens = max(model.signal_length(inputs[r]) for r in records)
        dim = model.encode_signals(inputs[records[0]][None].to(device)).shape[-1]
    with torch.random.fork_rng(devices=[]):   # the head's initialisation leaves the stage's RNG alone
        torch.manual_seed(seed)
        head = AnswerHead(dim, classes, tokens).to(device)
    optimizer = torch.optim.AdamW([*model.signal_encoder_parameters(), *head.parameters()], lr)
    loss_value = float("nan")
    for _ in tqdm(range(steps), desc="warm-up", disable=not progress):
        group = groups[int(torch.multinomial(sizes, 1, generator=generator))]
        pick = torch.tensor(group)[torch.randint(len(group), (batch_size,), generator=generator)]
        x = torch.stack([inputs[records[i]] for i in pick.tolist()]).to(device)
        y = targets[pick].to(device)
        logits = head(model.encode_signals(x))
        losses = [nn.functional.cross_entropy(out[y[:, t] >= 0], y[y[:, t] >= 0, t])
                  for t, out in enumerate(logits) if bool((y[:, t] >= 0).any())]
        loss = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
    optimizer.zero_grad(set_to_none=True)   # the stage's first step starts from clean gradients
    return {"steps": steps, "records": len(records), "tasks": tasks, "final_loss": round(loss_value, 5)}
