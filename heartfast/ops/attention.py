"""`attention`: the one call site for scaled-dot-product attention in models and the engine.

Layout follows flash-attn: q [B, S, Hq, D], k/v [B, Sk, Hkv, D] with Hq % Hkv == 0 (grouped-query),
or packed varlen q/k/v [T, H, D] with `cu_seqlens` (int32 [n + 1]) so batches never pay for padding.
The torch reference below is the CPU path; faster backends plug in behind the same signature.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
                        scale: float | None = None) -> torch.Tensor:
    """Dense attention over [B, S, H, D] tensors via SDPA (GQA by repeating KV heads)."""
    groups = q.shape[2] // k.shape[2]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    if groups > 1:
        kt, vt = kt.repeat_interleave(groups, dim=1), vt.repeat_interleave(groups, dim=1)
    # Causal with Sk > S aligns the query block to the end of the keys (cached prefix + new chunk).
    mask = None
    if causal and kt.shape[2] != qt.shape[2]:
        s, sk = qt.shape[2], kt.shape[2]
        mask = torch.ones(s, sk, dtype=torch.bool, device=q.device).tril(diagonal=sk - s)
        causal = False
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, is_causal=causal, scale=scale)
    return out.transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              scale: float | None = None, cu_seqlens: torch.Tensor | None = None,
              max_seqlen: int | None = None) -> torch.Tensor:
    """Attention output shaped like q. With `cu_seqlens`, q/k/v are packed [T, H, D] sequences."""
    if cu_seqlens is None:
        return attention_reference(q, k, v, causal=causal, scale=scale)
    bounds = cu_seqlens.tolist()
    pieces = [attention_reference(q[None, a:b], k[None, a:b], v[None, a:b], causal=causal, scale=scale)[0]
              for a, b in zip(bounds[:-1], bounds[1:])]
    return torch.cat(pieces, dim=0)
