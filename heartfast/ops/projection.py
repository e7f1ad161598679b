"""`dual_projection`: run DSPA's projectors for both streams and write their tokens into the LLM embeddings.

A stream is its input rows `x` [N, K], its layers (`Linear` with optional GELU, and optionally a final
`Norm` = LayerNorm over the embedding width H) and `rows`: the flat indices into the embeddings [T, H] where
its N · tokens output rows go (a final Linear of width tokens · H yields `tokens` rows per input vector, in
order). The streams' layers are aligned from the end (the last layers run together), so:

    Heartcare  signal: Linear(128→H)+GELU, Norm(H)          image: Linear(1152→2H)+GELU, Linear(2H→2H)
               launches: [sig L1 ‖ img L1], [sig Norm ‖ img L2 → scatter]
    GEM        signal: Linear(768→1024), shared MLP          image: shared MLP (Linear+GELU, Linear)
               launches: [sig adapter], [sig fc1 ‖ img fc1], [sig fc2 ‖ img fc2 → scatter]

A stream computes in its own dtype (input and weights alike) and the rows are cast to the embeddings' dtype
as they are written (a bf16 projector under autocast fills fp32 embeddings); fp32 dots are exact unless
`torch.set_float32_matmul_precision` allows TF32, as for cuBLAS.
The Triton path (CUDA, or the interpreter) writes the final rows in place into `embeds` and returns it;
the torch reference returns a new tensor. Either way, use the return value. Gradients flow to the stream
inputs and every weight (shared weights sum over streams) and to `embeds` outside the written rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from heartfast.ops.backend import requested_backend, use_triton


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
    """Project both streams and place their tokens into `embeds` [..., H] (see the module docstring).

    The grouped Triton kernel runs when asked for (`backend="triton"` or HEARTFAST_BACKEND=triton); `auto`
    takes the torch path on every device, because on an H100 the kernel measured 0.52-0.58x of eager cuBLAS
    forward and 0.69-0.81x forward+backward at H = 3072-3584
    (benchmarks/results/NVIDIA_H100_80GB_HBM3-2026-11-23-part1.md)."""
    tensors = [embeds] + [s.x for s in streams]
    if (backend or requested_backend()).lower() != "triton" or not use_triton(*tensors, backend="triton"):
        return dual_projection_reference(embeds, streams)
    _check(embeds, streams)
    if not embeds.is_contiguous():
        raise ValueError("the Triton dual_projection writes in place: embeds must be contiguous")
    for s in streams:
        dtypes = {s.x.dtype, *(t.dtype for layer in s.layers for t in (layer.weight, layer.bias))}
        if len(dtypes) != 1:
            raise ValueError(f"the Triton dual_projection needs one dtype for a stream's input and weights; got "
                             f"{sorted(map(str, dtypes))} (DualStreamProjector.write casts)")
    streams = [Stream(s.x, s.rows.to(torch.int64).contiguous(), s.layers, s.tokens) for s in streams]
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors + _parameters(streams)):
        _forward_kernels(embeds, streams, keep=False)  # inference: nothing saved for a backward
        return embeds
    layout = tuple((len(s.layers), s.tokens, tuple(_layer_key(layer) for layer in s.layers)) for s in streams)
    flat_inputs: list[torch.Tensor] = []
    for s in streams:
        flat_inputs += [s.x, s.rows]
        for layer in s.layers:
            flat_inputs += [layer.weight, layer.bias]
    return _DualProjection.apply(layout, embeds, *flat_inputs)


def _parameters(streams: Sequence[Stream]) -> list[torch.Tensor]:
    return [t for s in streams for layer in s.layers for t in (layer.weight, layer.bias)]


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
    """Launch one grouped kernel per depth. Returns, per stream and layer, (input, extra) where extra is the
    GELU input [M, N] (Linear) or the LayerNorm mean/rstd [2, M] (Norm) when `keep`, else None."""
    from heartfast.kernels.dual_projection import grouped_projection_launch

    width = embeds.shape[-1]
    out = embeds.view(-1, width)
    ieee = torch.get_float32_matmul_precision() == "highest"  # fp32 follows torch's TF32 setting, like cuBLAS
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
                stats = x.new_empty((2, x.shape[0]), dtype=torch.float32) if keep else None
                norm = {"h": x, "g": layer.weight, "b": layer.bias, "out": out, "rows": s.rows, "eps": layer.eps,
                        "mean": stats[0] if keep else None, "rstd": stats[1] if keep else None}
                saved[si].append((x, stats))
                continue
            n = layer.weight.shape[0]
            y = None if final else x.new_empty((x.shape[0], n))
            pre = x.new_empty((x.shape[0], n)) if keep and layer.gelu else None
            linears.append({"x": x, "w": layer.weight.contiguous(), "b": layer.bias, "gelu": layer.gelu, "pre": pre,
                            "out": out if final else y, "rows": s.rows if final else None, "tokens": s.tokens})
            saved[si].append((x, pre))
            pending.append((si, y))
        grouped_projection_launch(linears, norm, store_pre=keep, ieee=ieee)
        for si, y in pending:
            if y is not None:
                inputs[si] = y
    return saved


class _DualProjection(torch.autograd.Function):
    """Forward: grouped Triton launches writing into `embeds` in place. Backward: per layer, the same
    kernels eager autograd would run (cuBLAS GEMMs, aten's fused gelu / layer-norm backward) on the saved
    GELU inputs and LayerNorm statistics, starting from the gradient rows gathered at the placeholders."""

    @staticmethod
    def forward(ctx, layout: tuple, embeds: torch.Tensor, *flat: torch.Tensor) -> torch.Tensor:
        streams = _unflatten(layout, flat)
        saved = _forward_kernels(embeds, streams, keep=True)
        ctx.mark_dirty(embeds)
        ctx.layout, ctx.width = layout, embeds.shape[-1]
        tensors = list(flat)
        for per_stream in saved:
            for x, kept in per_stream:
                tensors += [x, kept if kept is not None else x]  # Linear without GELU keeps nothing extra
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
            g = grad_flat.index_select(0, s.rows).reshape(s.x.shape[0], -1).to(s.x.dtype)
            layer_slots = [offset + 2 + 2 * i for i in range(len(s.layers))]
            acts = [(extra[cursor + 2 * i], extra[cursor + 2 * i + 1]) for i in range(len(s.layers))]
            cursor += 2 * len(s.layers)
            for i in reversed(range(len(s.layers))):
                layer, (x, kept) = s.layers[i], acts[i]
                if isinstance(layer, Norm):
                    # aten keeps the statistics in fp32 on CUDA but in the input dtype on CPU (interpreter runs)
                    stat_dtype = torch.float32 if x.is_cuda else x.dtype
                    mean, rstd = kept[0, :, None].to(stat_dtype), kept[1, :, None].to(stat_dtype)
                    g, gw, gb = torch.ops.aten.native_layer_norm_backward(
                        g.contiguous(), x, [width], mean, rstd, layer.weight, layer.bias, [True, True, True])
                else:
                    if layer.gelu:
                        g = torch.ops.aten.gelu_backward(g, kept)
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
