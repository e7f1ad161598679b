"""A toy stage for trainer tests: noisy linear regression with dropout (so RNG state matters).

Run under torchrun to train with DDP (no dropout: each process draws its own masks):
`python -m torch.distributed.run --standalone --nproc-per-node 2 toy_training.py OUT BATCH`.
"""
from __future__ import annotations

import json
import sys

import torch

from heartfast.train.loop import TrainConfig, Trainer


class ToyData:
    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def collate(samples):
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


def loss_fn(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).sum()


def make_trainer(out: str, steps: int = 6, batch_size: int = 8, accumulation: int = 1,
                 dropout: float = 0.2) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(dropout), torch.nn.Linear(16, 1))
    config = TrainConfig(steps=steps, lr=1e-2, warmup_steps=2, batch_size=batch_size, accumulation=accumulation,
                         out=out, progress=False)
    return Trainer(model, ToyData(), collate, loss_fn, lambda b: len(b[0]), config)


if __name__ == "__main__":
    trainer = make_trainer(sys.argv[1], batch_size=int(sys.argv[2]), dropout=0.0)
    history = trainer.fit()
    if trainer.dist.is_main:
        print(json.dumps([round(r["loss"], 6) for r in history]))
