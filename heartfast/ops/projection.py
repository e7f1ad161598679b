"""`dual_projection`: run DSPA's projectors for both streams and write their tokens into the LLM embeddings.

A stream is its input rows `x` [N, K], its layers (`Linear` with optional GELU, and optionally a final
`Norm` = LayerNorm over the embedding width H) and `rows`: the flat indices into the embeddings [T, H] where
its N · tokens output rows go (a final Linear of width tokens · H yields `tokens` rows per input vector, in
order). The streams' layers are aligned from the end (the last layers run together), so:

    Heartcare  signal: Linear(128→H)+GELU, Norm(H)          image: Linear(1152→2H)+GELU, Linear(2H→2H)
               launches: [sig L1 ‖ img L1], [sig Norm ‖ img L2 → scatter]
    GEM        signal: Linear(768→1024), shared MLP          image: shared MLP (Linear+GELU, Linear)
               launches: [sig adapter], [sig fc1 ‖ img fc1], [sig fc2 ‖ img fc2 → scatter]

The Triton path (CUDA, or the interpreter) writes the final rows in place into `embeds` and returns it;
the torch reference returns a new tensor. Either way, use the return value. Gradients flow to the stream
inputs and every weight (shared weights sum over streams) and to `embeds` outside the written rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from heartfast.ops.backend import use_triton


@dataclass
class Linear:
    weight: torch.Tensor  # [N, K] (nn.Linear layout)
    bias: torch.Tensor  # [N]
    gelu: bool = False


@dataclass
class Norm:
    weight: torch.Tensor  # [H]
    bias: torch.Tensor  # [H]
    eps: float = 1e-5


@dataclass
class Stream:
    x: torch.Tensor  # [N, K]
    rows: torch.Tensor  # int64 [N * tokens], flat indices into embeds.view(-1, H)
    layers: list = field(default_factory=list)  # Linear ... [Norm]
    tokens: int = 1


def _check(embeds: torch.Tensor, streams: Sequence[Stream]) -> int:
    width = embeds.shape[-1]
    if len(streams) not in (1, 2):
        raise ValueError(f"dual_projection takes one or two streams, got {len(streams)}")
    for s in streams:
        if not s.layers or not isinstance(s.layers[0], Linear):
            raise ValueError("a stream starts with a Linear layer")
        if any(isinstance(layer, Norm) for layer in s.layers[:-1]):
            raise ValueError("Norm is only supported as a stream's last layer")
        last = s.layers[-1]
        out_width = width if isinstance(last, Norm) else last.weight.shape[0] // s.tokens
        if out_width != width or (isinstance(last, Norm) and s.tokens != 1):
            raise ValueError(f"a stream's final width must be tokens × {width} (the embedding width)")
        if s.rows.numel() != s.x.shape[0] * s.tokens:
            raise ValueError(f"rows has {s.rows.numel()} entries for {s.x.shape[0]} vectors × {s.tokens} tokens")
    if sum(isinstance(s.layers[-1], Norm) for s in streams) > 1:
        raise ValueError("at most one stream may end in a Norm layer (one norm problem per launch)")
    return width


def apply_layer(x: torch.Tensor, layer: Linear | Norm) -> torch.Tensor:
    """One projector layer in plain torch: LayerNorm, or Linear with its optional GELU."""
    if isinstance(layer, Norm):
        return F.layer_norm(x, (x.shape[-1],), layer.weight, layer.bias, layer.eps)
    y = F.linear(x, layer.weight, layer.bias)
    return F.gelu(y) if layer.gelu else y


def dual_projection_reference(embeds: torch.Tensor, streams: Sequence[Stream]) -> torch.Tensor:
    """Plain torch (the CPU path, differentiable by autograd): a new tensor with the rows replaced."""
    width = _check(embeds, streams)
    flat = embeds.reshape(-1, width)
    for s in streams:
        y = s.x
        for layer in s.layers:
            y = apply_layer(y, layer)
        flat = flat.index_copy(0, s.rows, y.reshape(-1, width).to(flat.dtype))
    return flat.view(embeds.shape)


def dual_projection(embeds: torch.Tensor, streams: Sequence[Stream], backend: str | None = None) -> torch.Tensor:
    """Project both streams and place their tokens into `embeds` [..., H] (see the module docstring)."""
    tensors = [embeds] + [s.x for s in streams]
    if not use_triton(*tensors, backend=backend):
        return dual_projection_reference(embeds, streams)
    _check(embeds, streams)
    if not embeds.is_contiguous():
        raise ValueError("the Triton dual_projection writes in place: embeds must be contiguous")
    layout = tuple((len(s.layers), s.tokens, tuple(_layer_key(layer) for layer in s.layers)) for s in streams)
    flat_inputs: list[torch.Tensor] = []
    for s in streams:
        flat_inputs += [s.x, s.rows]
        for layer in s.layers:
            flat_inputs += [layer.weight, layer.bias]
    return _DualProjection.apply(layout, embeds, *flat_inputs)


def _layer_key(layer: Linear | Norm) -> tuple:
    return ("norm", layer.eps) if isinstance(layer, Norm) else ("linear", layer.gelu)


def _unflatten(layout: tuple, flat: Sequence) -> list[Stream]:
    streams, i = [], 0
    for n_layers, tokens, keys in layout:
        x, rows = flat[i], flat[i + 1]
        i += 2
        layers: list[Linear | Norm] = []
        for kind, arg in keys:
            w, b = flat[i], flat[i + 1]
            i += 2
            layers.append(Norm(w, b, arg) if kind == "norm" else Linear(w, b, arg))
        streams.append(Stream(x, rows, layers, tokens))
    return streams


def _forward_kernels(embeds: torch.Tensor, streams: list[Stream], keep: bool) -> list[list]:
    """Launch one grouped kernel per depth; return per stream, per layer, (input, pre-activation) if `keep`."""
    from heartfast.kernels.dual_projection import grouped_projection_launch

    width = embeds.shape[-1]
    out = embeds.view(-1, width)
    depth = max(len(s.layers) for s in streams)
    inputs = [s.x.contiguous() for s in streams]
    saved: list[list] = [[] for _ in streams]
    for level in range(depth):
        linears, norm, pending = [], None, []
        for si, s in enumerate(streams):
            index = level - (depth - len(s.layers))
            if index < 0:
                continue
            layer, x = s.layers[index], inputs[si]
            final = index == len(s.layers) - 1
            if isinstance(layer, Norm):
                norm = {"h": x, "g": layer.weight, "b": layer.bias, "out": out, "rows": s.rows, "eps": layer.eps}
                saved[si].append((x, None))
                continue
            n = layer.weight.shape[0]
            y = None if final else x.new_empty((x.shape[0], n))
            pre = x.new_empty((x.shape[0], n)) if keep and layer.gelu else None
            linears.append({"x": x, "w": layer.weight.contiguous(), "b": layer.bias, "gelu": layer.gelu, "pre": pre,
                            "out": out if final else y, "rows": s.rows if final else None, "tokens": s.tokens})
            saved[si].append((x, pre))
            pending.append((si, y))
        grouped_projection_launch(linears, norm, store_pre=keep)
        for si, y in pending:
            if y is not None:
                inputs[si] = y
    return saved


def _gelu_grad(a: torch.Tensor) -> torch.Tensor:
    a = a.float()
    return 0.5 * (1.0 + torch.erf(a / math.sqrt(2.0))) + a * torch.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)


def _norm_backward(g: torch.Tensor, h: torch.Tensor, layer: Norm) -> tuple[torch.Tensor, ...]:
    h32, g32 = h.float(), g.float()
    mean = h32.mean(-1, keepdim=True)
    rstd = torch.rsqrt(h32.var(-1, unbiased=False, keepdim=True) + layer.eps)
    xhat = (h32 - mean) * rstd
    gx_hat = g32 * layer.weight.float()
    gh = rstd * (gx_hat - gx_hat.mean(-1, keepdim=True) - xhat * (gx_hat * xhat).mean(-1, keepdim=True))
    return gh.to(h.dtype), (g32 * xhat).sum(0).to(layer.weight.dtype), g32.sum(0).to(layer.bias.dtype)


class _DualProjection(torch.autograd.Function):
    """Forward: grouped Triton launches writing into `embeds` in place. Backward: cuBLAS GEMMs per layer."""

    @staticmethod
    def forward(ctx, layout: tuple, embeds: torch.Tensor, *flat: torch.Tensor) -> torch.Tensor:
        streams = _unflatten(layout, flat)
        keep = any(t.requires_grad for t in flat)  # pre-activations are stored only when a backward can follow
        saved = _forward_kernels(embeds, streams, keep=keep)
        ctx.mark_dirty(embeds)
        ctx.layout, ctx.width = layout, embeds.shape[-1]
        tensors = list(flat)
        for per_stream in saved:
            for x, pre in per_stream:
                tensors += [x, pre if pre is not None else x]
        ctx.save_for_backward(*tensors)
        ctx.n_flat = len(flat)
        return embeds

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        tensors = ctx.saved_tensors
        flat, extra = tensors[:ctx.n_flat], tensors[ctx.n_flat:]
        streams = _unflatten(ctx.layout, flat)
        width = ctx.width
        grad_flat = grad.reshape(-1, width)
        grads: list[torch.Tensor | None] = [None] * ctx.n_flat
        offset, cursor = 0, 0
        for s in streams:
            g = grad_flat.index_select(0, s.rows).reshape(s.x.shape[0], -1)
            layer_slots = [offset + 2 + 2 * i for i in range(len(s.layers))]
            acts = [(extra[cursor + 2 * i], extra[cursor + 2 * i + 1]) for i in range(len(s.layers))]
            cursor += 2 * len(s.layers)
            for i in reversed(range(len(s.layers))):
                layer, (x, pre) = s.layers[i], acts[i]
                if isinstance(layer, Norm):
                    g, gw, gb = _norm_backward(g, x, layer)
                else:
                    if layer.gelu:
                        g = (g.float() * _gelu_grad(pre)).to(x.dtype)
                    gw, gb = g.t() @ x, g.sum(0)
                    g = g @ layer.weight if (i > 0 or ctx.needs_input_grad[2 + offset]) else None
                grads[layer_slots[i]], grads[layer_slots[i] + 1] = gw, gb
            grads[offset] = g if ctx.needs_input_grad[2 + offset] else None
            offset += 2 + 2 * len(s.layers)
        grad_embeds = None
        if ctx.needs_input_grad[1]:
            grad_embeds = grad.clone()
            view = grad_embeds.view(-1, width)
            for s in streams:
                view.index_fill_(0, s.rows, 0)
        return (None, grad_embeds, *grads)
