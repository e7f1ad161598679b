"""Model presets: `tiny` (CPU tests and the demo) and the published systems, built from local checkpoints.

    tiny            llama-like decoder (256 wide, 4 layers) + tiny SigLIP + Beat 'tiny', word tokenizer
    tiny-gem        the same decoder + tiny CLIP (patches) + GEM time-series encoder 'tiny' + GEM projector:
                    GEM's signal path at toy size (one stream over the whole 10 s, 100 ms patches)
    heartcare-3.8b  Phi-3-mini-4k-instruct + SigLIP-so400m-patch14-384 (pooled) + Beat 'beat-4s'
    heartcare-7b    Qwen2.5-7B-Instruct + SigLIP-so400m-patch14-384 (pooled) + Beat 'beat-4s'
    gem-7b          Vicuna-7B (Llama) + CLIP-ViT-L/14-336 (patches, layer -2) + GEM time-series encoder

`build_model(name, llm_dir=..., vision_dir=..., beat_dir=...)` loads the named parts from local directories
(no downloads); `preset_config(name)` is the architecture alone (the shapes of the public checkpoints), used
for parameter counts without any weights (`parameter_counts`, built on the meta device).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from heartfast.model import vocab
from heartfast.model.heartcare import HeartcareConfig, HeartcareGPT
from heartfast.model.llm import DecoderConfig, DecoderLM
from heartfast.model.vision import ImageEncoder, VisionConfig, tiny_vision_config

TINY_TOKENIZER_SIZE = 1831   # len(vocab.word_tokenizer()), checked by the tests
PHI3_MINI = DecoderConfig(arch="phi3", vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5,
                          max_position_embeddings=4096, sliding_window=2047,
                          rope={"rope_type": "default", "rope_theta": 10000.0})
QWEN25_7B = DecoderConfig(arch="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                          num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6,
                          max_position_embeddings=32768, rope={"rope_type": "default", "rope_theta": 1000000.0})
VICUNA_7B = DecoderConfig(arch="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5,
                          max_position_embeddings=4096, rope={"rope_type": "default", "rope_theta": 10000.0})
TINY_LLM = DecoderConfig(arch="llama", vocab_size=TINY_TOKENIZER_SIZE, hidden_size=256, intermediate_size=688,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                         max_position_embeddings=2048, rope={"rope_type": "default", "rope_theta": 10000.0})
SIGLIP_SO400M_384 = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                         image_size=384, patch_size=14)
CLIP_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14, projection_dim=768)


@dataclass(frozen=True)
class Preset:
    llm: DecoderConfig
    tower: str  # siglip | clip
    tower_shape: dict | None  # None: the tiny tower
    vision_mode: str  # pooled | patches
    select_layer: int
    signal_encoder: str  # beat | timeseries
    signal_preset: str  # BeatConfig / TimeSeriesConfig preset name
    projector: str  # heartcare | gem
    image_tokens: int
    tokenizer_size: int  # len() of the checkpoint's text tokenizer, before the markers are added


PRESETS: dict[str, Preset] = {
    "tiny": Preset(TINY_LLM, "siglip", None, "pooled", -1, "beat", "tiny", "heartcare", 2, TINY_TOKENIZER_SIZE),
    "tiny-gem": Preset(TINY_LLM, "clip", None, "patches", -2, "timeseries", "tiny", "gem", 1, TINY_TOKENIZER_SIZE),
    "heartcare-3.8b": Preset(PHI3_MINI, "siglip", SIGLIP_SO400M_384, "pooled", -1, "beat", "beat-4s", "heartcare", 2,
                             32011),
    "heartcare-7b": Preset(QWEN25_7B, "siglip", SIGLIP_SO400M_384, "pooled", -1, "beat", "beat-4s", "heartcare", 2,
                           151665),
    "gem-7b": Preset(VICUNA_7B, "clip", CLIP_L_336, "patches", -2, "timeseries", "gem", "gem", 1, 32000),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


def _vision_config(p: Preset) -> VisionConfig:
    if p.tower_shape is None:
        return tiny_vision_config(p.tower, p.vision_mode)
    import transformers

    config_cls = transformers.SiglipVisionConfig if p.tower == "siglip" else transformers.CLIPVisionConfig
    return VisionConfig(p.tower, p.vision_mode, p.select_layer, config_cls(**p.tower_shape).to_dict())


def _signal_config(p: Preset) -> tuple[dict, int]:
    """(encoder config fields, feature width) for the preset's signal encoder."""
    if p.signal_encoder == "beat":
        from heartfast.model.beat import BeatConfig

        c = BeatConfig.preset(p.signal_preset)
        return asdict(c), c.dim
    from heartfast.model.timeseries import TimeSeriesConfig

    c = TimeSeriesConfig.preset(p.signal_preset)
    return asdict(c), c.dim


def preset_config(name: str, signal_mode: str = "continuous", llm: DecoderConfig | None = None,
                  vision: VisionConfig | None = None, signal: dict | None = None,
                  token_ids: dict | None = None) -> HeartcareConfig:
    """The assembly config of a preset; parts loaded from disk override the preset's shapes."""
    p = get_preset(name)
    llm = llm or p.llm
    vision = vision or _vision_config(p)
    signal_fields, signal_dim = _signal_config(p)
    if signal is not None:
        signal_fields = signal
        signal_dim = signal["dim"]
    projector = {"kind": p.projector, "signal_dim": signal_dim, "image_dim": vision.width,
                 "hidden": llm.hidden_size, "image_tokens": p.image_tokens}
    return HeartcareConfig(
        llm=llm.to_dict(), projector=projector, vision=asdict(vision), signal_encoder=p.signal_encoder,
        beat=signal_fields if p.signal_encoder == "beat" else None,
        timeseries=signal_fields if p.signal_encoder == "timeseries" else None,
        signal_mode=signal_mode, token_ids=dict(token_ids or {}))


def parameter_counts(name: str, signal_mode: str = "continuous") -> dict[str, int]:
    """Parameters per part of a preset after the vocabulary extension, counted on the meta device."""
    p = get_preset(name)
    words = len(vocab.MARKERS)
    if signal_mode == "discrete":
        if p.signal_encoder != "beat":
            raise ValueError(f"preset {name!r} has no Beat tokenizer: the discrete mode does not apply")
        words += _signal_config(p)[0]["codebook_size"]
    llm = DecoderConfig(**{**p.llm.to_dict(), "vocab_size": max(p.llm.vocab_size, p.tokenizer_size + words)})
    with torch.device("meta"):
        model = HeartcareGPT(preset_config(name, signal_mode, llm=llm))
    parts = {"llm": model.llm, "vision": model.vision, "signal_encoder": model.signal_encoder,
             "projector": model.projector}
    counts = {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in parts.items()}
    counts["total"] = sum(counts.values())
    return counts


def build_model(name: str, llm_dir: str | Path | None = None, vision_dir: str | Path | None = None,
                signal_dir: str | Path | None = None, signal_mode: str = "continuous",
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A new HeartcareGPT (untrained projectors) and its text tokenizer, from local checkpoint directories.

    The tiny presets need no directories (random weights, the word tokenizer). The big presets need `llm_dir`
    (config.json, safetensors and tokenizer files) and `vision_dir`; `signal_dir` is the signal encoder: a Beat
    tokenizer saved by stage 1, or a safetensors directory of the GEM time-series encoder (random weights when
    omitted, e.g. before stage 1). Returns (model, tokenizer).
    """
    p = get_preset(name)
    if llm_dir is None:
        if p.llm is not TINY_LLM:
            raise ValueError(f"preset {name!r} needs llm_dir: a local {p.llm.arch} checkpoint directory")
        llm, tokenizer = DecoderLM(DecoderConfig(**p.llm.to_dict())), vocab.word_tokenizer()
    else:
        llm, tokenizer = DecoderLM.from_pretrained(llm_dir, dtype=dtype), vocab.load_text_tokenizer(llm_dir)
    if vision_dir is None:
        if p.tower_shape is not None:
            raise ValueError(f"preset {name!r} needs vision_dir: a local {p.tower} checkpoint directory")
        vision = ImageEncoder(_vision_config(p))
    else:
        vision = ImageEncoder.from_pretrained(vision_dir, p.tower, p.vision_mode, p.select_layer, dtype=dtype)
    signal_encoder, signal_fields = _signal_encoder(p, signal_dir)
    words = list(vocab.MARKERS)
    if signal_mode == "discrete":
        words += vocab.ecg_code_tokens(signal_fields["codebook_size"])
    token_ids = vocab.extend_vocabulary(llm, tokenizer, words)
    config = preset_config(name, signal_mode, llm.config, vision.config, signal_fields, token_ids)
    model = HeartcareGPT(config, llm=llm, vision=vision, signal_encoder=signal_encoder)
    model.projector.to(dtype)
    return model.to(device), tokenizer


def _signal_encoder(p: Preset, directory: str | Path | None):
    if p.signal_encoder == "beat":
        from heartfast.model.beat import BeatConfig, BeatTokenizer

        encoder = (BeatTokenizer.from_pretrained(directory) if directory is not None
                   else BeatTokenizer(BeatConfig.preset(p.signal_preset)))
        return encoder, asdict(encoder.config)
    from heartfast.model.checkpoint import load_safetensors_dir
    from heartfast.model.timeseries import TimeSeriesConfig, TimeSeriesEncoder

    config = TimeSeriesConfig.preset(p.signal_preset)
    encoder = TimeSeriesEncoder(config)
    if directory is not None:
        encoder.load_state_dict(load_safetensors_dir(directory))
    return encoder, asdict(config)
