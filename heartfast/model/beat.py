"""Beat: the structure-aware discrete ECG tokenizer of HeartcareGPT.

A window of 12 leads at 250 Hz is cut into 25-sample patches (all leads of one patch = one token), a
Transformer encoder reads [patch tokens | learned queries], and only the query outputs are kept; a residual
VQ turns each query into `levels` codes. For training, a decoder rebuilds the window from [mask slots |
quantized queries] and a head predicts the next samples from the unquantized queries.
Loss = recon_weight*MSE(recon) + pred_weight*MSE(pred) + vq_weight*(commitment + diversity_weight*diversity).

Local start (`local_start`, on by default): query k enters the encoder as its learned vector plus the mean
of the patch tokens of the k-th of `queries` equal segments, and decoder slot i as the mask token plus the
latent of the segment patch i falls in. Without it every query is the same vector for every input, attends
almost uniformly over patches, and every slot reads the same mix of latents: a symmetric start where the
reconstruction gradient that would teach the attention to route is ~0, and training settles on the mean
(PRD 100 %). With it the model starts as a local autoencoder and attention refines it (docs/beat.md).

Inference (`encode`, `latents`) resamples and cleans a recording like training, cuts it into windows from
the right (the first is left-padded with zeros), zero-pads missing leads, normalises each window like
training (per-lead mean removed, divided by one std over all leads), and returns codes
[B, windows, queries, levels] or quantized latents.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heartfast.model.quantizer import ResidualVQ
from heartfast.ops.attention import attention
from heartfast.signal.filters import resample
from heartfast.signal.quality import beat_normalize, clean

SAMPLE_RATE = 250


@dataclass(frozen=True)
class BeatConfig:
    window_samples: int = 1000        # encoder input per window (4 s at 250 Hz)
    predict_samples: int = 500        # prediction target after the window (queries * patch)
    leads: int = 12
    patch: int = 25                   # samples per patch (100 ms)
    dim: int = 128
    layers: int = 6
    heads: int = 8
    head_dim: int = 64
    mlp_ratio: int = 4
    queries: int = 20
    codebook_size: int = 512
    levels: int = 2
    shared_codebook: bool = True      # one codebook for every level (Beat's code); False = C1 + C2
    ema_decay: float = 0.8
    dead_code_threshold: float = 0.05
    rotation_trick: bool = False      # False = straight-through gradients
    local_start: bool = True          # queries start from their segment's pooled patches, slots from their latent
    commitment_weight: float = 1.0
    diversity_weight: float = 0.3
    recon_weight: float = 1.0
    pred_weight: float = 0.5
    vq_weight: float = 0.25

    def __post_init__(self) -> None:
        if self.window_samples % self.patch:
            raise ValueError(f"window_samples {self.window_samples} is not a multiple of patch {self.patch}")
        if self.predict_samples % self.queries:
            raise ValueError(f"predict_samples {self.predict_samples} must split over {self.queries} queries")

    @property
    def patches(self) -> int:
        return self.window_samples // self.patch

    @classmethod
    def preset(cls, name: str, **overrides) -> "BeatConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown Beat preset {name!r}; choose from {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, BeatConfig] = {
    "beat-4s": BeatConfig(),
    "beat-2s": BeatConfig(window_samples=500, predict_samples=250, queries=10, codebook_size=256),
    "tiny": BeatConfig(window_samples=250, predict_samples=100, dim=32, layers=1, heads=2, head_dim=16,
                       queries=5, codebook_size=16),
}


class Block(nn.Module):
    """Pre-norm Transformer layer; attention goes through heartfast.ops (Triton on GPU)."""

    def __init__(self, config: BeatConfig) -> None:
        super().__init__()
        inner = config.heads * config.head_dim
        self.heads, self.head_dim = config.heads, config.head_dim
        self.norm1 = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * inner)
        self.proj = nn.Linear(inner, config.dim)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(nn.Linear(config.dim, config.mlp_ratio * config.dim), nn.GELU(),
                                 nn.Linear(config.mlp_ratio * config.dim, config.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, self.head_dim).unbind(2)
        x = x + self.proj(attention(q, k, v).reshape(b, s, -1))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, config: BeatConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


@dataclass
class BeatOutput:
    loss: torch.Tensor
    parts: dict[str, torch.Tensor]   # recon, pred, commitment, diversity (unweighted)
    reconstruction: torch.Tensor     # [B, 12, window]
    prediction: torch.Tensor         # [B, 12, predict]
    codes: torch.Tensor              # [B, queries, levels]


class BeatTokenizer(nn.Module):
    def __init__(self, config: BeatConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        patch_values = c.leads * c.patch
        self.patch_embed = nn.Linear(patch_values, c.dim)
        self.positions = nn.Parameter(torch.randn(c.patches, c.dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(c.queries, c.dim) * 0.02)
        self.encoder = Transformer(c)
        self.quantizer = ResidualVQ(c.dim, c.codebook_size, c.levels, shared=c.shared_codebook,
                                    decay=c.ema_decay, dead_code_threshold=c.dead_code_threshold,
                                    rotation_trick=c.rotation_trick)
        self.mask_token = nn.Parameter(torch.zeros(c.dim))
        self.decoder_positions = nn.Parameter(torch.randn(c.patches + c.queries, c.dim) * 0.02)
        self.decoder = Transformer(c)
        self.reconstruct = nn.Linear(c.dim, patch_values)
        self.predict = nn.Linear(c.dim, c.leads * (c.predict_samples // c.queries))

    # ---- training ----------------------------------------------------------------------------
    def encode_queries(self, windows: torch.Tensor) -> torch.Tensor:
        """Normalised windows [B, 12, window] -> unquantized query outputs [B, queries, dim]."""
        c = self.config
        b = windows.shape[0]
        patches = windows.reshape(b, c.leads, c.patches, c.patch).permute(0, 2, 1, 3).reshape(b, c.patches, -1)
        tokens = self.patch_embed(patches) + self.positions
        queries = self.queries.expand(b, -1, -1)
        if c.local_start:
            queries = queries + F.adaptive_avg_pool1d(tokens.transpose(1, 2), c.queries).transpose(1, 2)
        tokens = torch.cat([tokens, queries], dim=1)
        return self.encoder(tokens)[:, c.patches:]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, queries, dim] -> reconstructed window [B, 12, window]."""
        c = self.config
        b = latents.shape[0]
        slots = self.mask_token.expand(b, c.patches, -1)
        if c.local_start:
            slots = slots + F.interpolate(latents.transpose(1, 2), size=c.patches, mode="nearest").transpose(1, 2)
        hidden = self.decoder(torch.cat([slots, latents], dim=1) + self.decoder_positions)[:, :c.patches]
        patches = self.reconstruct(hidden).reshape(b, c.patches, c.leads, c.patch)
        return patches.permute(0, 2, 1, 3).reshape(b, c.leads, c.window_samples)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> BeatOutput:
        """inputs [B, 12, window] and targets [B, 12, predict], both already Beat-normalised."""
        c = self.config
        b = inputs.shape[0]
        z = self.encode_queries(inputs)
        vq = self.quantizer(z.reshape(-1, c.dim))
        reconstruction = self.decode_latents(vq.quantized.reshape(b, c.queries, c.dim))
        per_query = self.predict(z).reshape(b, c.queries, c.leads, -1)
        prediction = per_query.permute(0, 2, 1, 3).reshape(b, c.leads, c.predict_samples)
        parts = {"recon": F.mse_loss(reconstruction, inputs), "pred": F.mse_loss(prediction, targets),
                 "commitment": vq.commitment, "diversity": vq.diversity}
        vq_loss = c.commitment_weight * parts["commitment"] + c.diversity_weight * parts["diversity"]
        loss = c.recon_weight * parts["recon"] + c.pred_weight * parts["pred"] + c.vq_weight * vq_loss
        return BeatOutput(loss, parts, reconstruction, prediction, vq.indices.reshape(b, c.queries, c.levels))

    # ---- inference ---------------------------------------------------------------------------
    def windows(self, signals: torch.Tensor | np.ndarray, fs: float) -> torch.Tensor:
        """Signals [leads, T] or [B, leads, T] at fs -> windows [B, W, 12, window] prepared like training:
        resampled to 250 Hz, cleaned (0.5 Hz high-pass, powerline notch), cut from the right (the first
        window left-padded with zeros), missing leads as zero rows, each window Beat-normalised."""
        c = self.config
        x = torch.as_tensor(np.asarray(signals) if not torch.is_tensor(signals) else signals,
                            dtype=torch.float32, device=self.positions.device)
        if x.dim() == 2:
            x = x[None]
        if x.dim() != 3:
            raise ValueError(f"signals must be [leads, T] or [B, leads, T], got shape {tuple(x.shape)}")
        if x.shape[1] > c.leads:
            raise ValueError(f"signals have {x.shape[1]} leads; Beat takes at most {c.leads}")
        if fs != SAMPLE_RATE:
            x = resample(x, fs, SAMPLE_RATE)
        x = F.pad(clean(x, SAMPLE_RATE), (0, 0, 0, c.leads - x.shape[1]))
        count = max(1, -(-x.shape[-1] // c.window_samples))
        x = F.pad(x, (count * c.window_samples - x.shape[-1], 0))
        w = x.reshape(x.shape[0], c.leads, count, c.window_samples).permute(0, 2, 1, 3)
        return normalise(w)

    @torch.no_grad()
    def encode(self, signals: torch.Tensor | np.ndarray, fs: float = SAMPLE_RATE) -> torch.Tensor:
        """Codes [B, windows, queries, levels]."""
        return self._quantize(self.windows(signals, fs))[0]

    @torch.no_grad()
    def latents(self, signals: torch.Tensor | np.ndarray, fs: float = SAMPLE_RATE) -> torch.Tensor:
        """Quantized latents [B, windows * queries, dim] (the signal stream of DSPA)."""
        return self.window_latents(self.windows(signals, fs))

    def window_latents(self, windows: torch.Tensor) -> torch.Tensor:
        """Windows [B, W, 12, window] (`windows`) -> quantized latents [B, W * queries, dim]. With gradients
        on, they pass straight through the quantizer to the query encoder (the values stay the quantized
        ones): how a stage that trains the encoder jointly (HeartcareGPT.train_signal_encoder) sees them."""
        b, w = windows.shape[:2]
        z = self.encode_queries(windows.reshape(b * w, self.config.leads, -1)).reshape(-1, self.config.dim)
        quantized = self.quantizer.lookup(self.quantizer.assign(z)).sum(-2)
        if torch.is_grad_enabled() and z.requires_grad:
            quantized = quantized + (z - z.detach())
        return quantized.reshape(b, -1, self.config.dim)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, windows, queries, levels] -> normalised signals [B, 12, windows * window]."""
        b, w = codes.shape[:2]
        latents = self.quantizer.lookup(codes.reshape(b * w, self.config.queries, -1)).sum(-2)
        recon = self.decode_latents(latents).reshape(b, w, self.config.leads, -1)
        return recon.permute(0, 2, 1, 3).reshape(b, self.config.leads, -1)

    def _quantize(self, windows: torch.Tensor) -> tuple[torch.Tensor, int]:
        b, w = windows.shape[:2]
        z = self.encode_queries(windows.reshape(b * w, self.config.leads, -1))
        codes = self.quantizer.assign(z.reshape(-1, self.config.dim))
        return codes.reshape(b, w, self.config.queries, self.config.levels), b

    # ---- save / load -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json and model.safetensors (parameters and codebook buffers)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps({"model": "beat", **asdict(self.config)}, indent=1))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  directory / "model.safetensors")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "BeatTokenizer":
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / "config.json", directory / "model.safetensors"
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; expected a directory written by save_pretrained")
        fields = json.loads(config_path.read_text())
        if fields.pop("model", None) != "beat":
            raise ValueError(f"{config_path}: not a Beat tokenizer config")
        fields.setdefault("local_start", False)   # written before the option existed: trained without it
        model = cls(BeatConfig(**fields))
        model.load_state_dict(load_file(weights_path))
        return model.to(device).eval()


def normalise(windows: torch.Tensor) -> torch.Tensor:
    """Beat normalisation of [..., leads, T]: subtract each lead's mean, divide by one std over all leads."""
    return beat_normalize(windows, windows[..., :0])[0]
