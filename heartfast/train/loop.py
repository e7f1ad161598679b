"""The training loop every stage shares: accumulation, clipping, schedules, mixed precision, DDP or
FSDP, exact resume, progress, JSONL metrics and a loss-curve PNG.

A stage supplies a model, an indexable dataset, a `collate(samples) -> batch`, a `loss_fn(model, batch)
-> summed loss`, and a `weight_fn(batch) -> int` (labelled tokens, or samples) so that the loss of a step
is the sum over the whole global batch divided by its total weight: one process with global batch B and
N processes with B / N each compute the same numbers.
"""
from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor
from tqdm.auto import tqdm

from heartfast.train.checkpoint import full_model_state, load_checkpoint, save_checkpoint
from heartfast.train.distributed import (PARALLEL_MODES, DistInfo, all_reduce_sum, barrier, init_distributed,
                                         shard_fsdp, wrap_ddp)
from heartfast.train.schedule import build_scheduler

H100_BF16_PEAK_FLOPS = 989e12


@dataclass
class TrainConfig:
    steps: int = 100
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: str = "cosine"          # cosine | linear | constant
    batch_size: int = 8               # global samples per optimizer step (split over processes)
    accumulation: int = 1             # micro-batches per step on each process
    clip: float = 1.0                 # max grad norm (0 = off)
    precision: str = "auto"           # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    checkpoint_every: int = 0         # steps between checkpoints (0 = only at the end / on interrupt)
    seed: int = 0
    out: str = "runs/train"
    progress: bool = True
    find_unused_parameters: bool = False  # DDP: parameters some batches do not reach (e.g. an absent stream)
    parallel: str = "ddp"             # over >1 processes: ddp (a replica each) | fsdp (sharded: models that don't fit)


class DataOrder:
    """A seeded permutation per epoch; the position (samples consumed) is the resumable state."""

    def __init__(self, size: int, seed: int) -> None:
        if size == 0:
            raise ValueError("the training set is empty")
        self.size, self.seed, self.position = size, seed, 0

    def take(self, n: int) -> list[int]:
        out = []
        while len(out) < n:
            epoch, offset = divmod(self.position, self.size)
            perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            chunk = perm[offset:offset + n - len(out)].tolist()
            out += chunk
            self.position += len(chunk)
        return out


def store_frozen_in(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Keep frozen floating-point parameters in the compute dtype; returns how many were cast.

    Under autocast an fp32 weight is cast to bf16 at every use, forward and backward: for a frozen 1B
    base that is ~6 GB of extra traffic per step and most of a LoRA step's time. A frozen weight needs
    no fp32 master copy (it is never updated), so storing it in bf16 computes the same products
    without the casts. Trainable parameters (LoRA, projectors) keep their fp32 master weights.
    """
    cast = 0
    for p in model.parameters():
        if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)
            cast += 1
    return cast


class Trainer:
    def __init__(self, model: torch.nn.Module, dataset: Sequence, collate: Callable[[list], object],
                 loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
                 weight_fn: Callable[[object], int], config: TrainConfig,
                 flops_per_sample: float | None = None) -> None:
        if config.parallel not in PARALLEL_MODES:
            raise ValueError(f"parallel {config.parallel!r}: expected one of {PARALLEL_MODES}")
        self.config, self.dataset, self.collate = config, dataset, collate
        self.loss_fn, self.weight_fn, self.flops_per_sample = loss_fn, weight_fn, flops_per_sample
        self.dist: DistInfo = init_distributed()
        per_step = config.batch_size // (self.dist.world_size * config.accumulation)
        if per_step * self.dist.world_size * config.accumulation != config.batch_size or per_step == 0:
            raise ValueError(f"batch_size {config.batch_size} must split evenly over {self.dist.world_size} "
                             f"processes x {config.accumulation} accumulation steps")
        self.micro_batch = per_step
        self.device = torch.device(f"cuda:{self.dist.local_rank}" if torch.cuda.is_available() else "cpu")
        # FSDP places each shard on the device itself: the whole model never has to fit there.
        self.sharded = self.dist.enabled and config.parallel == "fsdp"
        self.model = model if self.sharded else model.to(self.device)
        if self._precision() == "bf16":
            store_frozen_in(model, torch.bfloat16)
        self.wrapped = model
        if self.sharded:   # before the optimizer: it must hold the sharded parameters
            self.wrapped = shard_fsdp(model, self.dist, self.device, bf16=self._precision() == "bf16")
        elif self.dist.enabled:
            self.wrapped = wrap_ddp(model, self.dist, self.device, config.find_unused_parameters)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        # the fused AdamW kernel updates every parameter in one pass (one launch on CUDA instead of several
        # per tensor); FSDP's DTensor shards take the default (foreach) implementation
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay, fused=not self.sharded)
        self.scheduler = build_scheduler(self.optimizer, config.steps, config.warmup_steps, config.schedule)
        self.order = DataOrder(len(dataset), config.seed)
        self.step = 0
        self.out = Path(config.out)
        self._stop_requested = False

    # ---- state -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "latest.pt"

    def save(self) -> None:
        """Write `out/latest.pt` from rank 0 (every process joins: FSDP shards and RNG states are gathered)."""
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.scheduler, self.step,
                        {"position": self.order.position}, {"config": asdict(self.config)},
                        write=self.dist.is_main)
        barrier(self.dist)

    def resume(self) -> bool:
        """Continue from `out/latest.pt` when it exists; returns whether it did."""
        if not self.checkpoint_path.exists():
            return False
        payload = load_checkpoint(self.checkpoint_path, self.model, self.optimizer, self.scheduler)
        self.step, self.order.position = payload["step"], payload["data"]["position"]
        return True

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's parameters and buffers, whole, on the CPU of rank 0 (others: empty under FSDP).

        Under FSDP the model object holds only this process's shards (and forwards need every process),
        so a trained model is saved or evaluated from this state: every process must call it.
        """
        return full_model_state(self.model)

    # ---- one optimizer step ------------------------------------------------------------------
    def _precision(self) -> str:
        precision = self.config.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        return precision

    def _autocast(self):
        if self._precision() == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def train_step(self) -> dict:
        world, rank, micro = self.dist.world_size, self.dist.rank, self.micro_batch
        collated = []
        for _ in range(self.config.accumulation):
            indices = self.order.take(micro * world)[rank * micro:(rank + 1) * micro]
            collated.append(self.collate([self.dataset[i] for i in indices]))
        local = float(sum(self.weight_fn(b) for b in collated))   # on the host copy: no device sync
        batches = [_to_device(b, self.device) for b in collated]
        weight = all_reduce_sum(torch.tensor(local), self.dist)
        weight = weight.clamp_min(1.0).item()
        self.wrapped.train()
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = nullcontext()
            if self.sharded:   # gradients stay unsharded and local until the last micro-batch
                self.wrapped.set_requires_gradient_sync(last)
            elif self.dist.enabled and not last:
                sync = self.wrapped.no_sync()
            with sync, self._autocast():
                loss_sum = self.loss_fn(self.wrapped, batch)
            # DDP and FSDP average gradients over processes; scale so the result is sum / global weight.
            (loss_sum * (world / weight)).backward()
            total += loss_sum.detach().float()
        grad_norm = torch.tensor(float("nan"))
        if self.config.clip > 0:   # over DTensor shards under FSDP: the norm of the whole gradient
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.clip)
            if isinstance(grad_norm, DTensor):
                grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        loss = all_reduce_sum(total, self.dist).item() / weight
        return {"step": self.step, "loss": loss, "grad_norm": float(grad_norm),
                "lr": self.scheduler.get_last_lr()[0], "weight": weight}

    # ---- the loop ----------------------------------------------------------------------------
    def _request_stop(self, signum, frame) -> None:
        self._stop_requested = True

    def fit(self, resume: bool = True, on_step: Callable[[dict], None] | None = None) -> list[dict]:
        """Train to `config.steps`; on SIGINT/SIGTERM finish the step, checkpoint and return."""
        torch.manual_seed(self.config.seed + self.dist.rank)
        if resume:
            self.resume()
        self.out.mkdir(parents=True, exist_ok=True)
        metrics_path = self.out / "metrics.jsonl"
        history = _read_metrics(metrics_path, upto=self.step)
        if self.dist.is_main:
            metrics_path.write_text("".join(json.dumps(m) + "\n" for m in history))
        old = {s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=self.config.steps, initial=self.step, disable=not (self.config.progress and self.dist.is_main),
                   desc=f"train {self.out.name}", dynamic_ncols=True)
        try:
            while self.step < self.config.steps and not self._stop_requested:
                t0 = time.perf_counter()
                row = self.train_step()
                row["seconds"] = time.perf_counter() - t0
                row["samples_per_s"] = self.config.batch_size / row["seconds"]
                if self.flops_per_sample and self.device.type == "cuda":
                    row["mfu"] = row["samples_per_s"] * self.flops_per_sample / (H100_BF16_PEAK_FLOPS * self.dist.world_size)
                history.append(row)
                if self.dist.is_main:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", samples_s=f"{row['samples_per_s']:.1f}")
                if on_step:
                    on_step(row)
                every = self.config.checkpoint_every
                if every and self.step % every == 0 and self.step < self.config.steps:
                    self.save()
            self.save()
        finally:
            bar.close()
            for s, handler in old.items():
                signal.signal(s, handler)
        if self.dist.is_main:
            plot_loss(history, self.out / "loss.png")
        return history


def _to_device(batch, device: torch.device):
    """Move a collated batch (tensor, tuple/list of tensors, or an object with `.to`) to the device."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    return batch.to(device) if hasattr(batch, "to") else batch


def _read_metrics(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto]


def plot_loss(history: list[dict], path: Path) -> Path | None:
    """Loss curve PNG (matplotlib, a dev extra); returns None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in history]
    ax.plot(steps, [r["loss"] for r in history], lw=1.2)
    if any(math.isfinite(r["loss"]) and r["loss"] > 0 for r in history):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(path.parent.name)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
