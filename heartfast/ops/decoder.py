"""`add_rms_norm`, `rotary`, `silu_mul`: a decoder layer's elementwise steps, fused on the GPU at inference.

The torch references are transformers' Llama code (RMSNorm in fp32 cast back before the weight, rotate-half
RoPE, SiLU then product) and the CPU path. On CUDA the Triton kernels (kernels/decoder.py) run at inference
(RoPE in place) and in training (autograd Functions with fused backward kernels, RoPE out of place).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from heartfast.ops.backend import use_triton


def add_rms_norm_reference(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    total = x if delta is None else x + delta
    x32 = total.float()
    normed = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(total.dtype)
    return weight * normed, total


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMSNorm(x + delta) * weight, x + delta): the residual stream's update and the next norm in one pass."""
    tensors = (x, weight) if delta is None else (x, delta, weight)
    if use_triton(*tensors) and (delta is None or delta.dtype == x.dtype):
        from heartfast.kernels.decoder import add_rms_norm as kernel

        return kernel(x, delta, weight, eps)
    return add_rms_norm_reference(x, delta, weight, eps)


def rotary_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.shape[-1] features of x [..., H, D] by cos/sin [..., rot] (rotate-half)."""
    rot = cos.shape[-1]
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = torch.cat((-x_rot[..., half:], x_rot[..., :half]), dim=-1)
    out = x_rot * cos.unsqueeze(-2) + rotated * sin.unsqueeze(-2)
    return torch.cat((out, x_pass), dim=-1) if x_pass.shape[-1] else out


def rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
           sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on q [..., Hq, D] and k [..., Hk, D] with cos/sin [..., rot]; the fused path rotates in place."""
    if use_triton(q, k, cos, sin):
        from heartfast.kernels.decoder import rotary as kernel

        lead, rot = q.shape[:-2], cos.shape[-1]
        q2, k2 = kernel(q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:]),
                        cos.expand(*lead, rot).reshape(-1, rot), sin.expand(*lead, rot).reshape(-1, rot))
        return q2.view(*lead, *q.shape[-2:]), k2.view(*lead, *k.shape[-2:])
    return rotary_reference(q, cos, sin), rotary_reference(k, cos, sin)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up (SwiGLU's activation)."""
    if use_triton(gate, up):
        from heartfast.kernels.decoder import silu_mul as kernel

        return kernel(gate, up)
    return F.silu(gate) * up
