"""LoRA for the decoder: y = x Wᵀ + b + (α / r) · dropout(x) Aᵀ Bᵀ on the targeted Linear layers.

`LoraLinear` subclasses `nn.Linear` and keeps the base `weight` / `bias` under their own names, so a LoRA
model still loads plain checkpoints and its state dict only adds `<name>.lora_A` [r, in] and `<name>.lora_B`
[out, r]. A is Kaiming-uniform and B zero at start (the model is unchanged until trained), as in peft; the
math is peft's, so the same A/B give the same outputs (tests/test_lora.py). Fused projections (Phi-3's
`qkv_proj`, `gate_up_proj`) are ordinary targets: one A/B pair over the fused output, like peft.

`merge` folds the update into W for inference; `unmerge` restores W exactly (the pre-merge weight is kept,
which costs one copy of each targeted weight while merged).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
                   "gate_up_proj")


@dataclass
class LoraConfig:
    r: int = 64
    alpha: float = 128.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DECODER_LINEARS  # module names (last path component) to adapt

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"LoRA rank must be positive, got {self.r}")
        self.target_modules = tuple(self.target_modules)

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict:
        return {**asdict(self), "target_modules": list(self.target_modules)}


class LoraLinear(nn.Linear):
    def __init__(self, base: nn.Linear, config: LoraConfig) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(config.r, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, config.r, **factory))
        if not self.lora_A.is_meta:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = config.scaling
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self._original: torch.Tensor | None = None

    @property
    def merged(self) -> bool:
        return self._original is not None

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            return out
        # Scale the narrow [.., r] intermediate, and let the second GEMM add into `out` (addmm's epilogue):
        # no elementwise passes over the wide [.., out_features] tensor, forward or backward.
        low = F.linear(self.dropout(x), self.lora_A) * self.scaling
        return torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]),
                           self.lora_B.t()).view(out.shape)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self._original = self.weight.detach().clone()
        self.weight.add_(self.delta_weight().to(self.weight.dtype))

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.weight.copy_(self._original)
        self._original = None

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear with the update folded in (for export)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight if self.merged else self.weight + self.delta_weight().to(self.weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear


def apply_lora(model: nn.Module, config: LoraConfig, freeze_others: bool = True) -> list[str]:
    """Wrap every nn.Linear named in `config.target_modules` below `model`; returns the wrapped names.

    With `freeze_others`, every other parameter of `model` stops requiring gradients (make the parts you
    train alongside, e.g. the projectors, trainable again afterwards).
    """
    targets = [(name, module) for name, module in model.named_modules()
               if name.rsplit(".", 1)[-1] in config.target_modules and type(module) is nn.Linear]
    if not targets:
        raise ValueError(f"no nn.Linear named any of {config.target_modules} found")
    if freeze_others:
        model.requires_grad_(False)
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoraLinear(module, config))
    return [name for name, _ in targets]


def lora_layers(model: nn.Module) -> list[LoraLinear]:
    return [m for m in model.modules() if isinstance(m, LoraLinear)]


def merge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights (what a LoRA run needs to save)."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}
