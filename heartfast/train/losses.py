"""Cross-entropy on the LM head without the [tokens, vocab] fp32 logits in memory at once.

`linear_cross_entropy(hidden, weight, labels)` equals `F.cross_entropy(hidden @ weight.T, labels,
ignore_index=-100)` (mean over labelled tokens; with `token_weights`, the weighted mean). Rows are processed
in chunks: each chunk's logits are formed in fp32, turned into the loss and, while they are at hand, into
the gradients for `hidden` and `weight` (scaled in backward by the incoming gradient). Peak extra memory is
chunk × vocab floats instead of tokens × vocab; the matmul FLOPs are the same as forward + backward of the
plain version (6·T·H·V).
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, chunk_size: int, token_weights: torch.Tensor | None) -> torch.Tensor:
        kept = labels != IGNORE_INDEX
        share = kept.float() if token_weights is None else kept * token_weights.float()   # each row's weight
        count = share.sum().clamp_min(1e-12)
        need_grad = ctx.needs_input_grad
        grad_hidden = torch.zeros_like(hidden) if need_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_grad[1] else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if bias is not None and need_grad[2] else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start:start + chunk_size]
            y = labels[start:start + chunk_size]
            keep = share[start:start + chunk_size]
            logits = (h @ weight.T).float()
            if bias is not None:
                logits += bias.float()
            lse = logits.logsumexp(dim=-1)
            target = logits.gather(1, y.clamp_min(0).unsqueeze(1)).squeeze(1)
            total += ((lse - target) * keep).sum()
            # d loss / d logits = (softmax - onehot) · weight / count (ignored rows weigh 0)
            grad = (logits - lse.unsqueeze(1)).exp_()
            grad.scatter_add_(1, y.clamp_min(0).unsqueeze(1), torch.full_like(lse, -1.0).unsqueeze(1))  # no host sync
            grad *= keep.unsqueeze(1) / count
            if grad_hidden is not None:
                grad_hidden[start:start + chunk_size] = (grad.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += grad.T @ h.float()
            if grad_bias is not None:
                grad_bias += grad.sum(dim=0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total / count

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        scale = grad_out.float()
        gh = None if grad_hidden is None else grad_hidden * scale.to(grad_hidden.dtype)
        gw = None if grad_weight is None else (grad_weight * scale).to(ctx.dtypes[0])
        gb = None if grad_bias is None else (grad_bias * scale).to(ctx.dtypes[1])
        return gh, gw, gb, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         bias: torch.Tensor | None = None, chunk_size: int = 1024,
                         token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy of `hidden @ weight.T (+ bias)` against `labels` (-100 = ignore).

    hidden [T, H], weight [V, H], labels [T] (already shifted so row t predicts labels[t]); token_weights
    [T] (optional): the mean becomes sum(w · loss) / sum(w) over the labelled rows.
    """
    flat_weights = None if token_weights is None else token_weights.reshape(-1)
    return _LinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight, bias,
                                     labels.reshape(-1), chunk_size, flat_weights)
