"""Residual vector quantizer with EMA codebooks: Beat's discrete bottleneck.

Assignment and the EMA statistics come from `heartfast.ops.vq` (one fused Triton launch on GPU, the
torch reference on CPU). Around them, in torch: codebook EMA update (decay 0.8 in Beat) with dead-code
restart, the commitment loss, a codebook-diversity loss (entropy of the batch's mean soft assignment),
and the gradient path through the quantizer: straight-through or the rotation trick (Fifty et al., 2024).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from heartfast.ops.vq import vq_assign, vq_ema_stats


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor   # [N, D] sum of chosen codes, carrying gradient to the input
    indices: torch.Tensor     # [N, L]
    commitment: torch.Tensor  # scalar: mean over levels of mean ||level input - sg(code)||^2
    diversity: torch.Tensor   # scalar: 1 - entropy(mean soft assignment) / log K, averaged over levels


def rotate_onto(e: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The rotation trick: R e with R (detached) the scaled rotation taking e onto q, so the value is q
    and the gradient reaching e is rotated like e was, instead of copied (straight-through)."""
    eps = 1e-8
    e_norm = e.norm(dim=-1, keepdim=True).clamp_min(eps)
    q_norm = q.norm(dim=-1, keepdim=True).clamp_min(eps)
    u = (e / e_norm).detach()
    v = (q / q_norm).detach()
    w = F.normalize(u + v, dim=-1, eps=eps).detach()
    rotated = e - 2 * w * (w * e).sum(-1, keepdim=True) + 2 * v * (u * e).sum(-1, keepdim=True)
    return rotated * (q_norm / e_norm).detach()


class ResidualVQ(nn.Module):
    """`levels` residual levels over one shared codebook or one codebook per level, updated by EMA."""

    def __init__(self, dim: int, codebook_size: int, levels: int, *, shared: bool = True, decay: float = 0.8,
                 dead_code_threshold: float = 0.05, rotation_trick: bool = False,
                 diversity_temperature: float = 1.0) -> None:
        super().__init__()
        self.dim, self.codebook_size, self.levels, self.shared = dim, codebook_size, levels, shared
        self.decay, self.dead_code_threshold = decay, dead_code_threshold
        self.rotation_trick, self.diversity_temperature = rotation_trick, diversity_temperature
        books = 1 if shared else levels
        self.register_buffer("codebook", torch.randn(books, codebook_size, dim) / math.sqrt(dim))
        self.register_buffer("ema_count", torch.ones(books, codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z [N, D]; in training mode also update the codebooks from this batch."""
        if self.training and not bool(self.initialised):
            self._init_from(z.detach())
        if self.training:
            stats = vq_ema_stats(z.detach(), self.codebook, self.levels)
            indices = stats.indices
        else:
            indices = self.assign(z)
        codes = self.lookup(indices)                                   # [N, L, D], no gradient
        before = torch.cumsum(codes, dim=1) - codes                   # codes of the earlier levels
        level_inputs = z[:, None, :] - before                          # differentiable in z
        commitment = (level_inputs - codes).pow(2).mean()
        if self.rotation_trick:
            quantized = rotate_onto(level_inputs, codes).sum(1)
        else:
            quantized = z + (codes.sum(1) - z).detach()
        diversity = self._diversity(level_inputs)
        if self.training:
            self._ema_update(stats.counts, stats.sums, level_inputs.detach())
        return QuantizerOutput(quantized, indices, commitment, diversity)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Codes [N, L] of z [N, D] (inference: no losses, no update)."""
        return vq_assign(z.detach(), self.codebook, self.levels).indices

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for indices [..., L] -> [..., L, D]."""
        levels = torch.arange(self.levels, device=indices.device)
        book = torch.zeros_like(levels) if self.shared else levels
        return self.codebook[book, indices]

    def usage(self, indices: torch.Tensor) -> list[dict[str, float]]:
        """Per level: perplexity of the code histogram and the share of codes used at least once."""
        out = []
        for level in range(self.levels):
            counts = torch.bincount(indices[..., level].reshape(-1), minlength=self.codebook_size).float()
            p = counts / counts.sum().clamp_min(1)
            entropy = -(p[p > 0] * p[p > 0].log()).sum()
            out.append({"perplexity": float(entropy.exp()), "used": float((counts > 0).float().mean())})
        return out

    def _diversity(self, level_inputs: torch.Tensor) -> torch.Tensor:
        # Soft assignment over a training batch's rows (small N); pushes the mean usage towards uniform.
        losses = []
        books = self.codebook.clone()  # the EMA update changes the codebook in place after this
        for level in range(self.levels):
            book = books[0 if self.shared else level]
            x = level_inputs[:, level]
            distance = (book * book).sum(-1) - 2 * x @ book.T
            p = torch.softmax(-distance / self.diversity_temperature, dim=-1).mean(0)
            entropy = -(p * (p + 1e-10).log()).sum()
            losses.append(1 - entropy / math.log(self.codebook_size))
        return torch.stack(losses).mean()

    @torch.no_grad()
    def _init_from(self, z: torch.Tensor) -> None:
        """Codes start as random batch vectors (level inputs for later per-level books)."""
        x = z.float()
        for book in range(self.codebook.shape[0]):
            pick = torch.randint(0, x.shape[0], (self.codebook_size,), device=x.device)
            self.codebook[book] = x[pick]
            if not self.shared:
                x = x - self.codebook[book][vq_assign(x, self.codebook[book]).indices[:, 0]]
        self.ema_sum.copy_(self.codebook * self.ema_count[..., None])
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, counts: torch.Tensor, sums: torch.Tensor, level_inputs: torch.Tensor) -> None:
        if self.shared:
            counts, sums = counts.sum(0, keepdim=True), sums.sum(0, keepdim=True)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.ema_count.sum(-1, keepdim=True)
        smoothed = (self.ema_count + 1e-5) / (total + self.codebook_size * 1e-5) * total  # Laplace
        self.codebook.copy_(self.ema_sum / smoothed[..., None])
        self._restart_dead_codes(level_inputs)

    @torch.no_grad()
    def _restart_dead_codes(self, level_inputs: torch.Tensor) -> None:
        """Codes whose EMA count fell below the threshold move onto random inputs of this batch."""
        for book in range(self.codebook.shape[0]):
            dead = (self.ema_count[book] < self.dead_code_threshold).nonzero().squeeze(1)
            if dead.numel() == 0:
                continue
            pool = level_inputs.reshape(-1, self.dim) if self.shared else level_inputs[:, book]
            pick = torch.randint(0, pool.shape[0], (dead.numel(),), device=pool.device)
            self.codebook[book, dead] = pool[pick].float()
            self.ema_count[book, dead] = 1.0
            self.ema_sum[book, dead] = self.codebook[book, dead]
