"""DSPA projectors: map the signal and image streams into the LLM's embedding width H.

Heartcare (Xie et al.):  signal  Linear(128→H) → GELU → LayerNorm(H)                 1 token per latent
                         image   Linear(1152→kH) → GELU → Linear(kH→kH), k = 2        k tokens per vector
GEM (Lan et al.):        signal  Linear(768→1024) into the image width, then the shared MLP
                         both    Linear(1024→H) → GELU → Linear(H→H)  (LLaVA's mlp2x_gelu, shared weights)

`DualStreamProjector.write(embeds, ...)` runs both streams through `heartfast.ops.dual_projection`: one
grouped Triton launch per layer on the GPU, writing the final rows straight into the embeddings at the
placeholder rows. `project_signal` / `project_image` give the plain per-stream outputs (for inspection and
for callers that cache projected features).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from heartfast.ops import projection as proj

KINDS = ("heartcare", "gem")


@dataclass
class ProjectorConfig:
    kind: str = "heartcare"
    signal_dim: int = 128  # Beat latent width (Heartcare) or time-series encoder width (GEM)
    image_dim: int = 1152  # vision tower width
    hidden: int = 3072  # LLM embedding width H
    image_tokens: int = 2  # tokens per image vector: k = 2 for Heartcare, 1 for GEM

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown projector kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "gem" and self.image_tokens != 1:
            raise ValueError("GEM's projector yields one token per image feature (image_tokens = 1)")


class DualStreamProjector(nn.Module):
    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        c = self.config = config
        h = c.hidden
        if c.kind == "heartcare":
            self.signal_fc = nn.Linear(c.signal_dim, h)
            self.signal_norm = nn.LayerNorm(h)
            self.image_fc1 = nn.Linear(c.image_dim, c.image_tokens * h)
            self.image_fc2 = nn.Linear(c.image_tokens * h, c.image_tokens * h)
        else:
            self.signal_adapter = nn.Linear(c.signal_dim, c.image_dim)
            self.mlp_fc1 = nn.Linear(c.image_dim, h)
            self.mlp_fc2 = nn.Linear(h, h)

    def signal_layers(self) -> list:
        if self.config.kind == "heartcare":
            return [proj.Linear(self.signal_fc.weight, self.signal_fc.bias, gelu=True),
                    proj.Norm(self.signal_norm.weight, self.signal_norm.bias, self.signal_norm.eps)]
        return [proj.Linear(self.signal_adapter.weight, self.signal_adapter.bias), *self._shared_mlp()]

    def image_layers(self) -> list:
        if self.config.kind == "heartcare":
            return [proj.Linear(self.image_fc1.weight, self.image_fc1.bias, gelu=True),
                    proj.Linear(self.image_fc2.weight, self.image_fc2.bias)]
        return self._shared_mlp()

    def _shared_mlp(self) -> list:
        return [proj.Linear(self.mlp_fc1.weight, self.mlp_fc1.bias, gelu=True),
                proj.Linear(self.mlp_fc2.weight, self.mlp_fc2.bias)]

    @property
    def image_tokens(self) -> int:
        return self.config.image_tokens

    def write(self, embeds: torch.Tensor, signal: torch.Tensor | None = None, signal_rows: torch.Tensor | None = None,
              image: torch.Tensor | None = None, image_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Project the streams and place them in `embeds` [..., H]; returns the embeddings (use the result).

        signal [Ns, signal_dim] with signal_rows int64 [Ns]; image [Ni, image_dim] with image_rows
        [Ni · image_tokens] (flat indices into embeds.view(-1, H), the tokens of one vector consecutive).
        Under autocast the projectors compute in the autocast dtype, as eager autocast would.
        """
        device = embeds.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else embeds.dtype
        streams = []
        if signal is not None and signal.shape[0]:
            streams.append(proj.Stream(signal.to(dtype), signal_rows, self._cast(self.signal_layers(), dtype), 1))
        if image is not None and image.shape[0]:
            streams.append(proj.Stream(image.to(dtype), image_rows, self._cast(self.image_layers(), dtype),
                                       self.image_tokens))
        if not streams:
            return embeds
        return proj.dual_projection(embeds, streams)

    @staticmethod
    def _cast(layers: list, dtype: torch.dtype) -> list:
        if all(layer.weight.dtype == dtype for layer in layers):
            return layers
        cast = []
        for layer in layers:
            w, b = layer.weight.to(dtype), layer.bias.to(dtype)
            cast.append(proj.Norm(w, b, layer.eps) if isinstance(layer, proj.Norm) else proj.Linear(w, b, layer.gelu))
        return cast

    def project_signal(self, x: torch.Tensor) -> torch.Tensor:
        """[..., signal_dim] -> [..., H]."""
        for layer in self.signal_layers():
            x = proj.apply_layer(x, layer)
        return x

    def project_image(self, x: torch.Tensor) -> torch.Tensor:
        """[..., n, image_dim] -> [..., n · image_tokens, H]."""
        for layer in self.image_layers():
            x = proj.apply_layer(x, layer)
        return x.reshape(*x.shape[:-2], -1, self.config.hidden)
