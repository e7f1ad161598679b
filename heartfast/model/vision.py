"""Image encoders for the image stream: SigLIP and CLIP vision towers (transformers classes, local files).

Input: images in [0, 1], either whole pages [B, 3, H, W] or the 12 lead-wise crops [B, 12, 3, h, w] that
`heartfast.render.lead_crops` cuts. Each picture is resized to the tower's resolution and normalised with
the tower's mean/std, then encoded in one batched call.

Output modes:
  pooled   one vector per picture (SigLIP's attention-pool head; CLIP's post-LN CLS): [B, n, D] with
           n = 1 (whole image) or 12 (crops). Heartcare's image stream.
  patches  the patch tokens of layer `select_layer` (LLaVA/GEM use -2, CLS dropped): [B, n · P, D].
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TOWERS = ("siglip", "clip")
NORMALISATION = {"siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                 "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))}


@dataclass
class VisionConfig:
    tower: str = "siglip"
    mode: str = "pooled"  # pooled | patches
    select_layer: int = -1  # patches mode: which hidden state (-2 = penultimate, as LLaVA/GEM)
    hf_config: dict = field(default_factory=dict)  # the tower's transformers config (to rebuild without files)

    def __post_init__(self) -> None:
        if self.tower not in TOWERS:
            raise ValueError(f"unknown vision tower {self.tower!r}; expected one of {TOWERS}")
        if self.mode not in ("pooled", "patches"):
            raise ValueError(f"vision mode must be 'pooled' or 'patches', got {self.mode!r}")

    @property
    def width(self) -> int:
        return int(self.hf_config["hidden_size"])

    @property
    def image_size(self) -> int:
        return int(self.hf_config["image_size"])

    def tokens_per_picture(self) -> int:
        if self.mode == "pooled":
            return 1
        return (self.image_size // int(self.hf_config["patch_size"])) ** 2


def _tower_classes(tower: str):
    import transformers

    if tower == "siglip":
        return transformers.SiglipVisionConfig, transformers.SiglipVisionModel
    return transformers.CLIPVisionConfig, transformers.CLIPVisionModel


def tiny_vision_config(tower: str = "siglip", mode: str = "pooled") -> VisionConfig:
    """A CPU-sized tower (32 px, patch 8, width 64, 2 layers) with random weights: tests and the demo."""
    config_cls, _ = _tower_classes(tower)
    hf = config_cls(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8)
    return VisionConfig(tower=tower, mode=mode, select_layer=-1, hf_config=hf.to_dict())


class ImageEncoder(nn.Module):
    """A frozen-by-default vision tower with the pooled / patch-token modes described above."""

    def __init__(self, config: VisionConfig, tower: nn.Module | None = None) -> None:
        super().__init__()
        if tower is None:
            config_cls, model_cls = _tower_classes(config.tower)
            hf = dict(config.hf_config)
            hf.pop("model_type", None)
            tower = model_cls(config_cls(**hf))
        self.config = config
        self.tower = tower

    @classmethod
    def from_pretrained(cls, directory: str | Path, tower: str | None = None, mode: str = "pooled",
                        select_layer: int = -1, dtype: torch.dtype = torch.float32) -> "ImageEncoder":
        """Load a SigLIP / CLIP checkpoint directory (a full two-tower checkpoint or a vision-only one)."""
        directory = Path(directory)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: no config.json in the vision checkpoint directory")
        raw = json.loads(config_path.read_text())
        kind = tower or ("clip" if raw.get("model_type", "").startswith("clip") else "siglip")
        _, model_cls = _tower_classes(kind)
        model = model_cls.from_pretrained(str(directory), local_files_only=True, dtype=dtype)
        config = VisionConfig(tower=kind, mode=mode, select_layer=select_layer, hf_config=model.config.to_dict())
        return cls(config, tower=model)

    @property
    def width(self) -> int:
        return self.config.width

    def preprocess(self, pictures: torch.Tensor) -> torch.Tensor:
        """[N, 3, h, w] in [0, 1] (or uint8 0-255, as the renderer writes) -> the tower's resolution, normalised,
        in the tower's dtype."""
        size = self.config.image_size
        x = pictures.float() / 255.0 if pictures.dtype == torch.uint8 else pictures.float()
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean, std = (torch.tensor(v, device=x.device).view(1, 3, 1, 1) for v in NORMALISATION[self.config.tower])
        x = (x - mean) / std
        return x.to(next(self.tower.parameters()).dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] or crops [B, n, 3, h, w] -> [B, n_tokens, D] (see the module docstring)."""
        if images.dim() == 4:
            images = images[:, None]
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, 3, H, W] or [B, n, 3, h, w], got {tuple(images.shape)}")
        b, n = images.shape[:2]
        pixels = self.preprocess(images.flatten(0, 1))
        if self.config.mode == "pooled":
            features = self.tower(pixel_values=pixels).pooler_output[:, None]
        else:
            out = self.tower(pixel_values=pixels, output_hidden_states=True)
            features = out.hidden_states[self.config.select_layer]
            if self.config.tower == "clip":
                features = features[:, 1:]  # drop CLS
        return features.reshape(b, n * features.shape[1], features.shape[-1])
