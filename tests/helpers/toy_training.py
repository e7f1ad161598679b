"""A toy stage for trainer tests: noisy linear regression through a small stack of blocks, with dropout
(so RNG state matters), a frozen input layer and a block whose weight is frozen but whose bias trains
(frozen and trainable parameters in one FSDP unit).

Under torchrun:
`python -m torch.distributed.run --standalone --nproc-per-node 2 toy_training.py OUT BATCH` trains with
DDP (no dropout: each process draws its own masks) and prints the losses;
`... toy_training.py fsdp OUT` runs the FSDP scenarios of `fsdp_runs` and prints their results.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

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


class ToyNet(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(nn.Linear(16, 16) for _ in range(2))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16, 1)
        self.inp.requires_grad_(False)
        self.blocks[0].weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = x + torch.tanh(block(x))
        return self.head(self.drop(x))


def collate(samples):
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


def loss_fn(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).sum()


def make_trainer(out: str, steps: int = 6, batch_size: int = 8, accumulation: int = 1,
                 dropout: float = 0.2, parallel: str = "ddp", precision: str = "auto") -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(steps=steps, lr=1e-2, warmup_steps=2, batch_size=batch_size, accumulation=accumulation,
                         out=out, progress=False, parallel=parallel, precision=precision)
    return Trainer(ToyNet(dropout), ToyData(), collate, loss_fn, lambda b: len(b[0]), config)


def interrupted(out: str, at: int, **kwargs) -> Trainer:
    """A run stopped (checkpointed) after step `at`, as on SIGINT."""
    trainer = make_trainer(out, **kwargs)
    trainer.fit(on_step=lambda row: setattr(trainer, "_stop_requested", row["step"] == at))
    return trainer


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter unsharded (collective under FSDP)."""
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
            for n, p in model.named_parameters()}


def fsdp_runs(out: Path) -> dict:
    """Losses and grad norms of 6-step FSDP runs: without dropout and with 2 micro-batches per process
    (to compare with one process taking the global batch at once), with
    dropout uninterrupted and interrupted at step 3 then resumed, and a bf16 run (with its parameter
    dtypes); plus whether frozen
    weights stayed unchanged. `out/cut0` is left interrupted at step 3 (no dropout) for a plain resume;
    `out/full0_state.pt` holds the whole trained model of the first run (`Trainer.full_state_dict`)."""
    plain = make_trainer(str(out / "full0"), accumulation=2, dropout=0.0, parallel="fsdp")
    before = full_weights(plain.model)
    rows = plain.fit()
    after = full_weights(plain.model)
    state = plain.full_state_dict()
    if plain.dist.is_main:
        torch.save(state, out / "full0_state.pt")
    frozen = [n for n in before if n.startswith("inp.") or n == "blocks.0.weight"]
    interrupted(str(out / "cut0"), 3, accumulation=2, dropout=0.0, parallel="fsdp")
    full = make_trainer(str(out / "full"), parallel="fsdp").fit()
    interrupted(str(out / "cut"), 3, parallel="fsdp")
    resumed = make_trainer(str(out / "cut"), parallel="fsdp").fit()
    bf16_trainer = make_trainer(str(out / "bf16"), steps=2, parallel="fsdp", precision="bf16")
    bf16 = bf16_trainer.fit()
    dtypes = {n: str(p.dtype).removeprefix("torch.") for n, p in bf16_trainer.model.named_parameters()}
    return {"loss0": [r["loss"] for r in rows], "grad_norm0": [r["grad_norm"] for r in rows],
            "frozen_unchanged": all(torch.equal(before[n], after[n]) for n in frozen),
            "trained_changed": not torch.equal(before["blocks.0.bias"], after["blocks.0.bias"]),
            "full": [r["loss"] for r in full], "resumed": [r["loss"] for r in resumed],
            "resumed_steps": [r["step"] for r in resumed], "bf16": [r["loss"] for r in bf16], "bf16_dtypes": dtypes}


if __name__ == "__main__":
    from heartfast.train.distributed import shutdown_distributed

    if sys.argv[1] == "fsdp":
        result = fsdp_runs(Path(sys.argv[2]))
        if torch.distributed.get_rank() == 0:
            print(json.dumps(result))
    else:
        trainer = make_trainer(sys.argv[1], batch_size=int(sys.argv[2]), dropout=0.0)
        history = trainer.fit()
        if trainer.dist.is_main:
            print(json.dumps([round(r["loss"], 6) for r in history]))
    shutdown_distributed()
