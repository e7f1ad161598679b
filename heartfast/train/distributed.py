"""torchrun set-up and the two ways to spread a model over processes: DDP (a full replica per process)
and FSDP2 (`fully_shard`: parameters, gradients and optimizer state sharded, for models that don't fit).

gloo on CPU, nccl on CUDA; everything is a no-op for one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

PARALLEL_MODES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, ...)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend)
    return info


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown_distributed() -> None:
    """Leave the process group together: a process that exits while its peer still tears down gloo's
    connections can make that peer abort (seen once as SIGABRT in a loaded CI run)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj: object) -> list:
    """`obj` from every process, in rank order (a list of one without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def process_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[info.local_rank] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters)


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of every stack in the model (a ModuleList of >1 modules of one class: decoder layers,
    encoder blocks), children before the blocks that contain them (the order `fully_shard` needs)."""
    blocks = []
    for module in reversed(list(model.modules())):
        if isinstance(module, nn.ModuleList) and len(module) > 1 and len({type(m) for m in module}) == 1:
            blocks += list(module)
    return blocks


def shard_fsdp(model: nn.Module, info: DistInfo, device: torch.device, bf16: bool) -> nn.Module:
    """Shard `model` in place with FSDP2: one unit per repeated block, then the root (everything else).

    Each unit all-gathers its parameters just before its forward/backward and frees them after, so a
    process holds 1/N of the weights, gradients and optimizer state plus one block unsharded. Frozen and
    trainable parameters may share a unit (only the trainable ones get gradients). On CUDA with bf16 the
    all-gathered weights are bf16 and gradients are reduced in fp32 over fp32 master shards.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (info.world_size,))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if bf16 and device.type == "cuda" else MixedPrecisionPolicy())
    for block in repeated_blocks(model):
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model
