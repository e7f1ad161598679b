"""Decoder LLMs that load Hugging Face checkpoints: Llama, Qwen2 (qkv bias) and Phi-3 (fused qkv / gate_up).

Module names mirror transformers (`model.layers.3.self_attn.q_proj`, `lm_head`), so a checkpoint's
safetensors load without renaming and LoRA target names mean the same thing here as in peft. The numerics
follow transformers too (RMSNorm in fp32, RoPE tables in fp32 cast to the activation dtype), which is why
logits match to fp32 rounding (tests/test_llm_parity.py).

Attention goes through a small hook so that the trainer and the engine drive one decoder:

    hidden = lm.decode(input_ids=ids, positions=pos, kv=hook)   # [B, S, hidden]
    logits = lm.lm_head(hidden)                                  # or lm(...) for both

`kv` is any object with `attend(layer_idx, q, k, v) -> out` (q [B, S, Hq, D], k/v [B, S, Hkv, D] after RoPE,
out shaped like q). `DenseCausal` (the default) is causal attention over each row; `PackedCausal` treats
B=1 rows as packed sequences with `cu_seqlens`; the engine passes its paged-KV-cache hook.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from heartfast.ops.attention import attention
from heartfast.ops.decoder import add_rms_norm, rotary, silu_mul

ARCHITECTURES = ("llama", "qwen2", "phi3")
ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "longrope")


@dataclass
class DecoderConfig:
    """The fields of a transformers config.json that define the computation."""

    arch: str = "llama"
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int = 0  # 0: hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    rope: dict = field(default_factory=lambda: {"rope_type": "default", "rope_theta": 10000.0})
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Llama option; Qwen2 always has q/k/v bias
    mlp_bias: bool = False
    sliding_window: int | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown decoder architecture {self.arch!r}; expected one of {ARCHITECTURES}")
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        rope_type = self.rope.get("rope_type", "default")
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"unsupported rope_type {rope_type!r}; supported: {ROPE_TYPES}")

    @property
    def qkv_bias(self) -> bool:
        return self.arch == "qwen2" or self.attention_bias

    @classmethod
    def from_hf_dict(cls, raw: dict) -> "DecoderConfig":
        """Read a transformers config.json (4.x `rope_scaling` or 5.x `rope_parameters` spelling)."""
        model_type = raw.get("model_type", "llama")
        arch = {"llama": "llama", "qwen2": "qwen2", "phi3": "phi3"}.get(model_type)
        if arch is None:
            raise ValueError(f"config.json model_type {model_type!r} is not one of llama, qwen2, phi3")
        rope = dict(raw.get("rope_parameters") or raw.get("rope_scaling") or {})
        rope.setdefault("rope_theta", raw.get("rope_theta", 10000.0))
        rope["rope_type"] = rope.get("rope_type", rope.get("type", "default"))
        rope.pop("type", None)
        if rope["rope_type"] in ("su", "yarn") and arch == "phi3":
            rope["rope_type"] = "longrope"
        if "partial_rotary_factor" in raw:
            rope.setdefault("partial_rotary_factor", raw["partial_rotary_factor"])
        if rope["rope_type"] in ("longrope", "llama3"):
            rope.setdefault("original_max_position_embeddings",
                            raw.get("original_max_position_embeddings", raw.get("max_position_embeddings")))
        use_window = arch == "phi3" or (arch == "qwen2" and raw.get("use_sliding_window", False))
        heads = raw["num_attention_heads"]
        return cls(
            arch=arch, vocab_size=raw["vocab_size"], hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"], num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=heads, num_key_value_heads=raw.get("num_key_value_heads") or heads,
            head_dim=raw.get("head_dim") or 0, rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            max_position_embeddings=raw.get("max_position_embeddings", 4096), rope=rope,
            tie_word_embeddings=raw.get("tie_word_embeddings", False),
            attention_bias=raw.get("attention_bias", False), mlp_bias=raw.get("mlp_bias", False),
            sliding_window=raw.get("sliding_window") if use_window else None,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def parameter_count(self) -> int:
        """Parameters, computed from the shapes alone (used for the big presets that are never built here)."""
        h, d, layers = self.hidden_size, self.head_dim, self.num_hidden_layers
        q, kv = self.num_attention_heads * d, self.num_key_value_heads * d
        attn = h * (q + 2 * kv) + q * h + (q + 2 * kv if self.qkv_bias else 0) + (h if self.attention_bias else 0)
        mlp = 3 * h * self.intermediate_size + (2 * self.intermediate_size + h if self.mlp_bias else 0)
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return layers * (attn + mlp + 2 * h) + h + embeddings


class AttentionHook(Protocol):
    """How a decoder layer's attention is computed; the engine's paged KV cache is one of these."""

    def attend(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...


class DenseCausal:
    """Causal attention within each row of a [B, S] batch (right padding is harmless: pads come last)."""

    def __init__(self, sliding_window: int | None = None) -> None:
        self.sliding_window = sliding_window

    def attend(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.sliding_window is not None and k.shape[1] > self.sliding_window:
            raise ValueError(f"sequence of {k.shape[1]} tokens exceeds the sliding window {self.sliding_window}, "
                             "which the dense path does not implement")
        return attention(q, k, v, causal=True)


class PackedCausal:
    """Causal attention over several sequences packed into one row (B = 1), split by `cu_seqlens` (int32 [n+1])."""

    def __init__(self, cu_seqlens: torch.Tensor, max_seqlen: int | None = None) -> None:
        self.cu_seqlens = cu_seqlens
        self.max_seqlen = max_seqlen if max_seqlen is not None else int((cu_seqlens[1:] - cu_seqlens[:-1]).max())

    def attend(self, layer_idx: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.shape[0] != 1:
            raise ValueError("PackedCausal expects one packed row (batch size 1)")
        out = attention(q[0], k[0], v[0], causal=True, cu_seqlens=self.cu_seqlens, max_seqlen=self.max_seqlen)
        return out[None]


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 and cast back like transformers' LlamaRMSNorm."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_rms_norm(x, None, self.weight, self.eps)[0]

    def add(self, x: torch.Tensor, delta: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(x + delta), x + delta): the residual update fused with the norm that follows it."""
        return add_rms_norm(x, delta, self.weight, self.eps)


class Rotary(nn.Module):
    """RoPE cos/sin for the position ids of one call, with the scaling variants of these configs.

    `dynamic` (NTK) and `longrope` depend on the largest position in the call, exactly as in transformers:
    longrope uses `long_factor` once any position reaches `original_max_position_embeddings`.
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        rope = cfg.rope
        self.rope_type = rope.get("rope_type", "default")
        self.base = float(rope.get("rope_theta", 10000.0))
        self.dim = int(cfg.head_dim * rope.get("partial_rotary_factor", 1.0))
        self.attention_scaling = 1.0
        self._tables: dict[tuple, torch.Tensor] = {}
        if self.rope_type == "longrope":
            original = rope["original_max_position_embeddings"]
            factor = rope.get("factor") or cfg.max_position_embeddings / original
            self.attention_scaling = rope.get("attention_factor") or (
                1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original)))

    def _table_key(self, max_position: int) -> int | bool | None:
        """What the frequencies depend on: nothing, the long/short switch, or the length (dynamic NTK)."""
        if self.rope_type == "dynamic":
            return max(max_position + 1, self.cfg.max_position_embeddings)
        if self.rope_type == "longrope":
            return max_position + 1 > self.cfg.rope["original_max_position_embeddings"]
        return None

    def inv_freq(self, max_position: int) -> torch.Tensor:
        rope, exponents = self.cfg.rope, torch.arange(0, self.dim, 2, dtype=torch.int64).float() / self.dim
        if self.rope_type == "dynamic":
            seq_len = max(max_position + 1, self.cfg.max_position_embeddings)
            factor, limit = rope["factor"], self.cfg.max_position_embeddings
            base = self.base * ((factor * seq_len / limit) - (factor - 1)) ** (self.dim / (self.dim - 2))
            return 1.0 / (base ** exponents)
        inv = 1.0 / (self.base ** exponents)
        if self.rope_type == "linear":
            return inv / rope["factor"]
        if self.rope_type == "llama3":
            return _llama3_inv_freq(inv, rope)
        if self.rope_type == "longrope":
            long = max_position + 1 > rope["original_max_position_embeddings"]
            factors = torch.tensor(rope["long_factor" if long else "short_factor"], dtype=torch.float32)
            return 1.0 / (factors * self.base ** exponents)
        return inv

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [B, S, rotary_dim] for positions [B, S]."""
        # Only dynamic NTK and longrope depend on the length; the others skip the device sync of .max()
        length_dependent = self.rope_type in ("dynamic", "longrope") and positions.numel()
        max_position = int(positions.max()) if length_dependent else 0
        key = (self._table_key(max_position), positions.device)
        if key not in self._tables:
            if len(self._tables) > 16:  # dynamic NTK: one table per length; keep the cache small
                self._tables.clear()
            self._tables[key] = self.inv_freq(max_position).to(positions.device)
        inv = self._tables[key]
        freqs = positions.float()[..., None] * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(dtype), (emb.sin() * self.attention_scaling).to(dtype)


def _llama3_inv_freq(inv: torch.Tensor, rope: dict) -> torch.Tensor:
    """Llama 3.1 frequency-dependent scaling: long wavelengths divided by `factor`, a smooth blend in between."""
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / low, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / high) & (wavelen <= old / low)
    return torch.where(medium, blended, scaled)


class FusedRows:
    """Several Linear layers of one module on one input (q/k/v, gate/up) whose weights are row blocks of one
    matrix, so inference runs one GEMM instead of several. The layers keep their Parameter objects (now
    viewing the shared matrix), so names, optimizers, checkpoints and `load_state_dict` work as before.
    `current` says whether that still holds: a layer replaced (LoRA) or a weight moved, cast or reassigned
    makes the owner drop the fusion and call the layers again."""

    def __init__(self, names: tuple[str, ...], weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.names, self.weight, self.bias = names, weight, bias

    @classmethod
    def of(cls, owner: nn.Module, *names: str) -> "FusedRows | None":
        layers = [getattr(owner, name) for name in names]
        if any(type(layer) is not nn.Linear for layer in layers) or \
                len({(layer.weight.device, layer.weight.dtype, layer.bias is None) for layer in layers}) != 1:
            return None
        weight = torch.cat([layer.weight.detach() for layer in layers])
        bias = torch.cat([layer.bias.detach() for layer in layers]) if layers[0].bias is not None else None
        start = 0
        for layer in layers:
            rows = slice(start, start + layer.out_features)
            layer.weight.data = weight[rows]
            if bias is not None:
                layer.bias.data = bias[rows]
            start += layer.out_features
        return cls(names, weight, bias)

    def current(self, owner: nn.Module) -> bool:
        start = 0
        for name in self.names:
            layer = getattr(owner, name)
            if type(layer) is not nn.Linear or not _rows_of(layer.weight, self.weight, start) or \
                    (layer.bias is None) != (self.bias is None) or \
                    (layer.bias is not None and not _rows_of(layer.bias, self.bias, start)):
                return False
            start += layer.out_features
        return True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _rows_of(part: torch.Tensor, whole: torch.Tensor, start: int) -> bool:
    """Whether `part` is rows start.. of `whole` in memory."""
    return (part.dtype == whole.dtype and part.device == whole.device and part.shape[1:] == whole.shape[1:]
            and part.data_ptr() == whole.data_ptr() + start * whole.stride(0) * whole.element_size())


def _fuse(owner: nn.Module, attr: str, *names: str) -> None:
    """Fuse `names` into owner.`attr` unless the fusion there is still current."""
    fused = getattr(owner, attr)
    if fused is None or not fused.current(owner):
        setattr(owner, attr, FusedRows.of(owner, *names))


def _fused(owner: nn.Module, attr: str) -> FusedRows | None:
    """The owner's fusion when it applies to this call (no autograd, still current); a stale one is dropped."""
    fused = getattr(owner, attr)
    if fused is None or torch.is_grad_enabled():
        return None
    if not fused.current(owner):
        setattr(owner, attr, None)
        return None
    return fused


class SelfAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx, self.cfg = layer_idx, cfg
        d, hq, hkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        if cfg.arch == "phi3":
            self.qkv_proj = nn.Linear(cfg.hidden_size, (hq + 2 * hkv) * d, bias=False)
        else:
            self.q_proj = nn.Linear(cfg.hidden_size, hq * d, bias=cfg.qkv_bias)
            self.k_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias)
            self.v_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(hq * d, cfg.hidden_size, bias=cfg.attention_bias)
        self._qkv: FusedRows | None = None

    def fuse_projections(self) -> None:
        if self.cfg.arch != "phi3":
            _fuse(self, "_qkv", "q_proj", "k_proj", "v_proj")

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kv: AttentionHook) -> torch.Tensor:
        b, s, _ = x.shape
        d, hq, hkv = self.cfg.head_dim, self.cfg.num_attention_heads, self.cfg.num_key_value_heads
        if self.cfg.arch == "phi3":
            q, k, v = self.qkv_proj(x).split([hq * d, hkv * d, hkv * d], dim=-1)
        elif (fused := _fused(self, "_qkv")) is not None:
            q, k, v = fused(x).split([hq * d, hkv * d, hkv * d], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q, k, v = q.view(b, s, hq, d), k.view(b, s, hkv, d), v.view(b, s, hkv, d)
        q, k = rotary(q, k, cos, sin)
        out = kv.attend(self.layer_idx, q, k, v)
        return self.o_proj(out.reshape(b, s, hq * d))


class SwiGLU(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.fused = cfg.arch == "phi3"
        h, i = cfg.hidden_size, cfg.intermediate_size
        if self.fused:
            self.gate_up_proj = nn.Linear(h, 2 * i, bias=False)
        else:
            self.gate_proj = nn.Linear(h, i, bias=cfg.mlp_bias)
            self.up_proj = nn.Linear(h, i, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(i, h, bias=cfg.mlp_bias)
        self._gate_up: FusedRows | None = None

    def fuse_projections(self) -> None:
        if not self.fused:
            _fuse(self, "_gate_up", "gate_proj", "up_proj")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        elif (fused := _fused(self, "_gate_up")) is not None:
            gate, up = fused(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(silu_mul(gate, up))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = SelfAttention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x: torch.Tensor, delta: torch.Tensor | None, cos: torch.Tensor, sin: torch.Tensor,
                kv: AttentionHook) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual stream, this layer's MLP output): the caller's next norm adds the two (`RMSNorm.add`),
        so each residual addition runs fused with the norm after it."""
        h, x = self.input_layernorm.add(x, delta)
        h, x = self.post_attention_layernorm.add(x, self.self_attn(h, cos, sin, kv))
        return x, self.mlp(h)


class DecoderBody(nn.Module):
    """`model.*` in a checkpoint: embeddings, layers, final norm."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DecoderLM(nn.Module):
    """A causal LM with transformers' parameter names; see the module docstring for the calling convention."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = DecoderBody(cfg)
        self.rotary = Rotary(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.gradient_checkpointing = False

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.model.embed_tokens

    def fuse_projections(self) -> "DecoderLM":
        """Lay q/k/v and gate/up weights out as one matrix each (no extra memory) for one GEMM apiece at
        inference. Call after the model is on its device and in its dtype; training is unaffected."""
        for layer in self.model.layers:
            layer.self_attn.fuse_projections()
            layer.mlp.fuse_projections()
        return self

    def decode(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
               positions: torch.Tensor | None = None, kv: AttentionHook | None = None) -> torch.Tensor:
        """Final-norm hidden states [B, S, hidden] from ids [B, S] or embeddings [B, S, hidden].

        positions: int [B, S] (default 0..S-1 per row); kv: the attention hook (default `DenseCausal`).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        b, s = x.shape[:2]
        if positions is None:
            positions = torch.arange(s, device=x.device).expand(b, s)
        kv = kv if kv is not None else DenseCausal(self.config.sliding_window)
        cos, sin = self.rotary(positions, x.dtype)
        delta = None
        for layer in self.model.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, delta = checkpoint(layer, x, delta, cos, sin, kv, use_reentrant=False)
            else:
                x, delta = layer(x, delta, cos, sin, kv)
        return self.model.norm.add(x, delta)[0]

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, kv: AttentionHook | None = None) -> torch.Tensor:
        """Logits [B, S, vocab]."""
        return self.lm_head(self.decode(input_ids, inputs_embeds, positions, kv))

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> "DecoderLM":
        """Load config.json + model.safetensors (or a sharded index) written by transformers."""
        from heartfast.model.checkpoint import load_safetensors_dir

        directory = Path(directory)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: no config.json in the checkpoint directory")
        cfg = DecoderConfig.from_hf_dict(json.loads(config_path.read_text()))
        with torch.device("meta"):
            model = cls(cfg)
        state = load_safetensors_dir(directory, dtype=dtype, device=device)
        if cfg.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        missing = [m for m in missing if not (cfg.tie_word_embeddings and m == "lm_head.weight")]
        if missing or unexpected:
            raise ValueError(f"{directory}: checkpoint does not match the {cfg.arch} layout "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        if cfg.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        return model.to(device=device, dtype=dtype)

    def resize_vocab(self, new_size: int, init_rows: str = "mean") -> None:
        """Grow embed_tokens and lm_head to `new_size` rows; new rows are the mean of the old ones."""
        old = self.config.vocab_size
        if new_size < old:
            raise ValueError(f"cannot shrink the vocabulary from {old} to {new_size}")
        if new_size == old:
            return
        if init_rows != "mean":
            raise ValueError(f"unknown init_rows {init_rows!r} (only 'mean')")
        embed = self.model.embed_tokens.weight
        grown = _grown(embed.data, new_size)
        self.model.embed_tokens = nn.Embedding(new_size, self.config.hidden_size, _weight=grown)
        self.model.embed_tokens.weight.requires_grad_(embed.requires_grad)
        if self.config.tie_word_embeddings:
            self.lm_head = nn.Linear(self.config.hidden_size, new_size, bias=False, device=grown.device,
                                     dtype=grown.dtype)
            self.lm_head.weight = self.model.embed_tokens.weight
        else:
            head = self.lm_head.weight
            self.lm_head = nn.Linear(self.config.hidden_size, new_size, bias=False, device=grown.device,
                                     dtype=grown.dtype)
            self.lm_head.weight = nn.Parameter(_grown(head.data, new_size), requires_grad=head.requires_grad)
        self.config.vocab_size = new_size


def _grown(weight: torch.Tensor, rows: int) -> torch.Tensor:
    mean = weight.float().mean(0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(rows - weight.shape[0], -1)], dim=0).clone()
