"""HeartcareGPT / GEM assembly: encoders + DSPA projectors + decoder LLM over text with placeholder spans.

A prompt is text in which every ECG signal is the span `<signal_start> <signal>×n <signal_end>` and every
image `<image_start> <image>×m <image_end>` (`Spans` builds them; `build_input_ids` expands `<signal>` /
`<image>` markers written in a prompt). Any number of signals and images per sample: their features are
consumed in order of appearance, row by row through the batch. `embed(batch)` embeds the ids and writes the
projected stream features at the `<signal>` / `<image>` positions (one fused kernel on the GPU). In the
discrete mode a signal is spelled with Beat code tokens `<|ecg_k|>` (ordinary vocabulary) and only images
use placeholders. The loss is next-token cross-entropy on answer tokens only (labels -100 elsewhere).

Saved as a directory: config.json (this assembly's JSON config), model.safetensors (all weights) and the
text tokenizer's files.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from heartfast.model.checkpoint import load_safetensors_dir, save_state
from heartfast.model.dspa import DualStreamProjector, ProjectorConfig
from heartfast.model.llm import AttentionHook, DecoderConfig, DecoderLM, PackedCausal
from heartfast.model.vision import ImageEncoder, VisionConfig
from heartfast.model import vocab
from heartfast.model.lora import LoraConfig, apply_lora

SIGNAL_ENCODERS = ("beat", "timeseries")


@dataclass
class HeartcareConfig:
    llm: dict  # DecoderConfig fields
    projector: dict  # ProjectorConfig fields
    vision: dict | None = None  # VisionConfig fields
    signal_encoder: str = "beat"
    beat: dict | None = None  # BeatConfig fields
    timeseries: dict | None = None  # TimeSeriesConfig fields
    signal_mode: str = "continuous"  # continuous (latents through DSPA) | discrete (Beat codes as words)
    discrete_levels: int = 1  # discrete mode: residual levels spelled per query (the June code used 1)
    token_ids: dict = field(default_factory=dict)  # marker / code token -> id (presets.build_model fills it)
    lora: dict | None = None  # LoraConfig fields once `add_lora` was called (re-applied on load)

    def __post_init__(self) -> None:
        if self.signal_encoder not in SIGNAL_ENCODERS:
            raise ValueError(f"signal_encoder must be one of {SIGNAL_ENCODERS}, got {self.signal_encoder!r}")
        if self.signal_mode not in ("continuous", "discrete"):
            raise ValueError(f"signal_mode must be continuous or discrete, got {self.signal_mode!r}")
        if self.signal_mode == "discrete" and self.signal_encoder != "beat":
            raise ValueError("the discrete mode spells Beat codes; it needs signal_encoder='beat'")


@dataclass
class MultimodalBatch:
    """What `HeartcareGPT.embed` / `forward` take. Streams are listed in order of appearance in the batch."""

    input_ids: torch.Tensor  # [B, S]
    labels: torch.Tensor | None = None  # [B, S], -100 where no loss
    positions: torch.Tensor | None = None  # [B, S]; default 0..S-1 (packed rows: restart per sequence)
    cu_seqlens: torch.Tensor | None = None  # int32 [n + 1] when B = 1 holds packed sequences
    max_seqlen: int | None = None  # longest packed sequence, known on the host (spares a device sync)
    signals: torch.Tensor | None = None  # raw [Ns, leads, T] at signal_fs
    signal_fs: float = 500.0
    signal_features: torch.Tensor | None = None  # or precomputed encoder outputs [Ns, n, d]
    signal_inputs: list[torch.Tensor] | None = None  # or encoder inputs (`prepare_signals`), one per signal,
    #                                                  encoded in the step (a trainable signal encoder)
    images: torch.Tensor | None = None  # [Ni, 3, H, W] or lead crops [Ni, 12, 3, h, w] in [0, 1]
    image_features: torch.Tensor | None = None  # or precomputed tower outputs [Ni, n, d]

    def to(self, device: torch.device | str) -> "MultimodalBatch":
        def move(v):
            if isinstance(v, list):
                return [t.to(device) for t in v]
            return v.to(device) if torch.is_tensor(v) else v

        return MultimodalBatch(**{k: move(v) for k, v in self.__dict__.items()})


@dataclass
class HeartcareOutput:
    logits: torch.Tensor | None
    loss: torch.Tensor | None
    tokens: int  # labelled tokens the loss covers


class Spans:
    """Token-id spans for the stream placeholders and Beat codes."""

    def __init__(self, token_ids: dict[str, int]) -> None:
        self.ids = token_ids

    def signal(self, n: int) -> list[int]:
        return [self.ids[vocab.SIGNAL_START]] + [self.ids[vocab.SIGNAL]] * n + [self.ids[vocab.SIGNAL_END]]

    def image(self, n: int) -> list[int]:
        return [self.ids[vocab.IMAGE_START]] + [self.ids[vocab.IMAGE]] * n + [self.ids[vocab.IMAGE_END]]

    def signal_codes(self, codes: torch.Tensor, levels: int = 1) -> list[int]:
        """Beat codes [windows, queries, code_levels] -> `<signal_start> <|ecg_k|>… <signal_end>`."""
        base = self.ids["<|ecg_0|>"]
        words = (codes[..., :levels].reshape(-1) + base).tolist()
        return [self.ids[vocab.SIGNAL_START]] + words + [self.ids[vocab.SIGNAL_END]]


def build_input_ids(tokenizer, text: str, spans: Spans, signal_tokens: int | list[int] = 0,
                    image_tokens: int | list[int] = 0, signal_codes: list[torch.Tensor] | None = None,
                    levels: int = 1) -> list[int]:
    """Tokenize `text` and expand each `<signal>` / `<image>` marker into its span (counts per marker, in order)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    signal_id, image_id = spans.ids[vocab.SIGNAL], spans.ids[vocab.IMAGE]
    n_sig, n_img = ids.count(signal_id), ids.count(image_id)
    sig_counts = signal_tokens if isinstance(signal_tokens, list) else [signal_tokens] * n_sig
    img_counts = image_tokens if isinstance(image_tokens, list) else [image_tokens] * n_img
    codes_ok = signal_codes is None or len(signal_codes) == n_sig
    if len(sig_counts) != n_sig or len(img_counts) != n_img or not codes_ok:
        raise ValueError(f"the prompt has {n_sig} <signal> and {n_img} <image> markers; counts/codes do not match")
    out: list[int] = []
    si = ii = 0
    for token in ids:
        if token == signal_id:
            if signal_codes is not None:
                out += spans.signal_codes(signal_codes[si], levels)
            else:
                out += spans.signal(sig_counts[si])
            si += 1
        elif token == image_id:
            out += spans.image(img_counts[ii])
            ii += 1
        else:
            out.append(token)
    return out


class HeartcareGPT(nn.Module):
    def __init__(self, config: HeartcareConfig, llm: DecoderLM | None = None, vision: ImageEncoder | None = None,
                 signal_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.llm = llm if llm is not None else DecoderLM(DecoderConfig(**config.llm))
        if vision is None and config.vision is not None:
            vision = ImageEncoder(VisionConfig(**config.vision))
        self.vision = vision
        self.signal_encoder = signal_encoder if signal_encoder is not None else self._build_signal_encoder()
        self.projector = DualStreamProjector(ProjectorConfig(**config.projector))
        self.signal_encoder_trainable = False   # a training choice (`train_signal_encoder`), not saved
        self.freeze_encoders()

    def _build_signal_encoder(self) -> nn.Module:
        c = self.config
        if c.signal_encoder == "beat":
            from heartfast.model.beat import BeatConfig, BeatTokenizer

            return BeatTokenizer(BeatConfig(**(c.beat or {})))
        from heartfast.model.timeseries import TimeSeriesConfig, TimeSeriesEncoder

        return TimeSeriesEncoder(TimeSeriesConfig(**(c.timeseries or {})))

    def add_lora(self, config: LoraConfig) -> list[str]:
        """LoRA on the decoder (stage 3): only the adapters and the projectors stay trainable."""
        self.requires_grad_(False)
        names = apply_lora(self.llm, config)
        self.projector.requires_grad_(True)
        self.config.lora = config.to_dict()
        return names

    def encoders(self) -> list[nn.Module]:
        """The signal encoder and the vision tower that this model has."""
        return [m for m in (self.vision, self.signal_encoder) if m is not None]

    def freeze_encoders(self) -> None:
        """Freeze the vision tower and the signal encoder (the papers' setting in every stage), except the
        signal encoder's feature path after `train_signal_encoder()`. The encoders always run in eval mode:
        no dropout, and Beat's EMA codebooks stay as they are (only the query encoder learns)."""
        for module in self.encoders():
            module.requires_grad_(False)
            module.eval()
        if self.signal_encoder_trainable:
            for p in self.signal_encoder_parameters():
                p.requires_grad_(True)

    def train_signal_encoder(self, enabled: bool = True) -> None:
        """Let the signal encoder learn with the rest of the stage (it stays trainable through `train()`).

        The tiny presets' encoders start random: frozen, their features carry little of what the questions
        ask (docs/training.md, learning). Training them jointly is a departure from the papers (which freeze
        pretrained encoders); a training step then encodes `MultimodalBatch.signal_inputs` itself.
        """
        if enabled and self.config.signal_mode != "continuous":
            raise ValueError("a trainable signal encoder needs the continuous signal stream "
                             "(signal_mode='continuous')")
        self.signal_encoder_trainable = enabled
        self.freeze_encoders()

    def signal_encoder_parameters(self) -> list[nn.Parameter]:
        """The signal encoder's parameters that its features depend on (Beat's decoder and heads serve
        stage 1 only; they would get no gradient here)."""
        encoder = self.signal_encoder
        if self.config.signal_encoder == "beat":
            return [encoder.positions, encoder.queries, *encoder.patch_embed.parameters(),
                    *encoder.encoder.parameters()]
        return list(encoder.parameters())

    def train(self, mode: bool = True) -> "HeartcareGPT":
        super().train(mode)
        self.freeze_encoders()
        return self

    @property
    def spans(self) -> Spans:
        return Spans(self.config.token_ids)

    # ---- stream features ----------------------------------------------------------------------
    @torch.no_grad()
    def signal_features(self, signals: torch.Tensor | np.ndarray, fs: float) -> torch.Tensor:
        """Raw ECGs [Ns, leads, T] at fs -> encoder features [Ns, n, d] (Beat latents or GEM time-series tokens)."""
        return self.encode_signals(self.prepare_signals(signals, fs))

    @torch.no_grad()
    def prepare_signals(self, signals: torch.Tensor | np.ndarray, fs: float) -> torch.Tensor:
        """Raw ECGs [Ns, leads, T] at fs -> the encoder's inputs: Beat windows [Ns, W, 12, window] (resampled,
        cleaned, normalised) or GEM's [Ns, 12, 5000]. Fixed preprocessing, so a trainer computes it once."""
        if self.config.signal_encoder == "beat":
            return self.signal_encoder.windows(signals, fs)
        return self.signal_encoder.prepare(signals, fs)

    def encode_signals(self, inputs: torch.Tensor) -> torch.Tensor:
        """Encoder inputs [Ns, ...] (`prepare_signals`) -> features [Ns, n, d], differentiable in the encoder.

        Beat: the quantized latents (the codes' sum per query), with the straight-through gradient to the
        query encoder; the values are exactly the quantized ones (`q + (z - z.detach())`).
        """
        if self.config.signal_encoder != "beat":
            return self.signal_encoder(inputs)
        return self.signal_encoder.window_latents(inputs)

    def signal_length(self, inputs: torch.Tensor) -> int:
        """Feature rows (`<signal>` placeholders) of one signal's encoder inputs (`prepare_signals(...)[i]`)."""
        if self.config.signal_encoder == "beat":
            return inputs.shape[0] * self.signal_encoder.config.queries
        return self.signal_encoder.config.tokens

    def encode_signal_list(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """One encoder call per distinct input shape (recordings of different lengths); rows [sum n, d] in order."""
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault(tuple(x.shape), []).append(i)
        rows: list[torch.Tensor | None] = [None] * len(inputs)
        for members in groups.values():
            for i, f in zip(members, self.encode_signals(torch.stack([inputs[i] for i in members]))):
                rows[i] = f
        return torch.cat(rows)

    @torch.no_grad()
    def signal_codes(self, signals: torch.Tensor | np.ndarray, fs: float) -> torch.Tensor:
        """Beat codes [Ns, windows, queries, levels] for the discrete mode."""
        return self.signal_encoder.encode(signals, fs)

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images [Ni, 3, H, W] or crops [Ni, 12, 3, h, w] -> tower features [Ni, n, d]."""
        if self.vision is None:
            raise ValueError("this model has no vision tower")
        return self.vision(images)

    # ---- embedding and loss -------------------------------------------------------------------
    def embed(self, batch: MultimodalBatch) -> torch.Tensor:
        """Token embeddings [B, S, H] with the projected streams written at their placeholder positions."""
        ids = batch.input_ids
        embeds = self.llm.embed_tokens(ids)
        flat_ids = ids.reshape(-1)
        ids_of = self.config.token_ids
        signal = batch.signal_features
        if signal is None and batch.signal_inputs:
            signal = self.encode_signal_list(batch.signal_inputs)
        if signal is None and batch.signals is not None and self.config.signal_mode == "continuous":
            signal = self.signal_features(batch.signals, batch.signal_fs)
        image = batch.image_features
        if image is None and batch.images is not None:
            image = self.image_features(batch.images)
        signal_rows = image_rows = None
        if signal is not None:
            signal = signal.reshape(-1, signal.shape[-1])
            signal_rows = (flat_ids == ids_of[vocab.SIGNAL]).nonzero().squeeze(1)
            if signal_rows.numel() != signal.shape[0]:
                raise ValueError(f"{signal.shape[0]} signal feature rows for {signal_rows.numel()} "
                                 "<signal> placeholders")
        if image is not None:
            image = image.reshape(-1, image.shape[-1])
            image_rows = (flat_ids == ids_of[vocab.IMAGE]).nonzero().squeeze(1)
            if image_rows.numel() != image.shape[0] * self.projector.image_tokens:
                raise ValueError(f"{image.shape[0]} image vectors × {self.projector.image_tokens} tokens for "
                                 f"{image_rows.numel()} <image> placeholders")
        return self.projector.write(embeds, signal, signal_rows, image, image_rows)

    def hidden_states(self, batch: MultimodalBatch, kv: AttentionHook | None = None) -> torch.Tensor:
        """Final-norm decoder states [B, S, H] (trainers with a chunked cross-entropy start here)."""
        if kv is None and batch.cu_seqlens is not None:
            kv = PackedCausal(batch.cu_seqlens, batch.max_seqlen)
        return self.llm.decode(inputs_embeds=self.embed(batch), positions=batch.positions, kv=kv)

    def forward(self, batch: MultimodalBatch, reduction: str = "mean", return_logits: bool = True) -> HeartcareOutput:
        """Logits, and the next-token loss over labelled positions when `batch.labels` is given."""
        hidden = self.hidden_states(batch)
        logits = self.llm.lm_head(hidden)
        loss, count = None, 0
        if batch.labels is not None:
            targets = shifted_labels(batch.labels, batch.cu_seqlens)
            count = int((targets != -100).sum())
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=-100, reduction="sum")
            if reduction == "mean":
                loss = loss / max(count, 1)
        return HeartcareOutput(logits if return_logits else None, loss, count)

    # ---- save / load --------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, tokenizer=None,
                        state: dict[str, torch.Tensor] | None = None) -> Path:
        """config.json + model.safetensors (+ the tokenizer). `state`: the full state dict when this module
        holds only shards of it (FSDP gathers it with `Trainer.full_state_dict`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = asdict(self.config)
        config["llm"] = self.llm.config.to_dict()
        (directory / "config.json").write_text(json.dumps({"model": "heartcare", **config}, indent=1))
        save_state(self.state_dict() if state is None else state, directory / "model.safetensors")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> "HeartcareGPT":
        directory = Path(directory)
        path = directory / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; expected a directory written by HeartcareGPT.save_pretrained")
        fields = json.loads(path.read_text())
        if fields.pop("model", None) != "heartcare":
            raise ValueError(f"{path}: not a HeartcareGPT config")
        with torch.device("meta"):
            model = cls(HeartcareConfig(**fields))
            if model.config.lora is not None:
                apply_lora(model.llm, LoraConfig(**model.config.lora), freeze_others=False)
        state = load_safetensors_dir(directory, device=device)
        expected = model.state_dict()
        tied = {"llm.lm_head.weight"} if model.llm.config.tie_word_embeddings else set()
        missing = [k for k in expected if k not in state and k not in tied]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the config (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
        model.load_state_dict(state, strict=False, assign=True)
        if model.llm.config.tie_word_embeddings:
            model.llm.lm_head.weight = model.llm.embed_tokens.weight
        model.llm.rotary._tables.clear()
        _restore_buffers(model, device)
        model.freeze_encoders()
        return _cast_floating(model, dtype).to(device)


def shifted_labels(labels: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
    """targets[t] = labels[t + 1]; -100 at each row end and, for packed rows, at each sequence end."""
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]
    if cu_seqlens is not None:
        targets[:, (cu_seqlens[1:] - 1).long()] = -100
    return targets


def _restore_buffers(model: nn.Module, device: str | torch.device) -> None:
    """Non-persistent buffers are not in a checkpoint; the towers' `position_ids` (0..n-1) are rebuilt."""
    for module in model.modules():
        for name, buf in list(module._buffers.items()):
            if buf is None or not buf.is_meta:
                continue
            if name != "position_ids":
                raise ValueError(f"buffer {name} of {type(module).__name__} was not restored from the checkpoint")
            module._buffers[name] = torch.arange(buf.shape[-1], device=device).expand(buf.shape).clone()
    for name, param in model.named_parameters():
        if param.is_meta:
            raise ValueError(f"parameter {name} was not restored from the checkpoint")


def _cast_floating(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the LLM and projectors to `dtype`; keep the signal encoder (Beat's codebooks) in fp32."""
    model.llm.to(dtype)
    model.projector.to(dtype)
    if model.vision is not None:
        model.vision.tower.to(dtype)
    return model
