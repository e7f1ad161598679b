"""Instruction items -> tokenized training samples with their records' encoder features.

The prompt is `heartfast.instruct.prompt.item_prompt` (the same the engine serves); everything the chat
template appends after the prompt for the assistant turn (answer, end-of-turn tokens) is the labelled part.
Markers are expanded to the span lengths of their features (`build_input_ids`).

The encoders are frozen in the align and sft stages, so their outputs are computed once per record
(`FeatureCache`, batched, saved next to the run so a resumed run reuses them) and a step only runs the
projectors and the LLM. With a trainable signal encoder (`HeartcareGPT.train_signal_encoder`) the cache
keeps each record's encoder inputs instead (`HeartcareGPT.prepare_signals`: fixed preprocessing, in memory
only, recomputed in seconds on resume) and the step encodes them. With the image stream off, image inputs
are shown as signals.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from heartfast.instruct.items import Item
from heartfast.instruct.prompt import input_kinds, item_prompt
from heartfast.io.record import Record
from heartfast.model.heartcare import HeartcareGPT, build_input_ids
from heartfast.train.losses import IGNORE_INDEX
from heartfast.train.packing import Sample

FEATURE_CHUNK = 64   # records per encoder call


class FeatureCache:
    """Per record id: frozen-encoder signal features [n, d], or the encoder inputs of a trainable signal
    encoder, and, with the image stream, image features [m, d]."""

    def __init__(self, model: HeartcareGPT, images: bool, path: Path | None = None) -> None:
        if model.config.signal_mode != "continuous":
            raise ValueError("the align/sft stages train the continuous signal stream (signal_mode='continuous')")
        if images and model.vision is None:
            raise ValueError("the image stream is on but the model has no vision tower")
        self.model, self.images, self.path = model, images, path
        self.signal_inputs = model.signal_encoder_trainable   # store inputs, not (changing) features
        self.signal: dict[str, torch.Tensor] = {}          # features [n, d], or encoder inputs
        self.image: dict[str, torch.Tensor] = {}
        if path is not None and path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            self.image = saved["image"]
            if not self.signal_inputs:
                self.signal = saved["signal"]

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.signal and (not self.images or record_id in self.image)

    @torch.no_grad()
    def add(self, records: list[Record]) -> None:
        """Encode the records not cached yet, grouped by sampling rate and length (one call per group)."""
        todo = [r for r in records if r.id not in self]
        groups: dict[tuple[float, int], list[Record]] = {}
        for r in todo:
            groups.setdefault((r.fs, r.n_samples), []).append(r)
        device = next(self.model.llm.parameters()).device
        encode = self.model.prepare_signals if self.signal_inputs else self.model.signal_features
        for (fs, _), group in groups.items():
            signals = torch.from_numpy(np.stack([r.to_12_leads() for r in group]).astype(np.float32)).to(device)
            for r, f in zip(group, encode(signals, fs)):
                self.signal[r.id] = f.float().cpu()
            if self.images:
                from heartfast.render.renderer import render

                pictures = render(signals, fs, size=self.model.vision.config.image_size, device=device)
                for r, f in zip(group, self.model.image_features(pictures)):
                    self.image[r.id] = f.float().cpu()

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")   # one per process: torchrun ranks save alike
        torch.save({"signal": {} if self.signal_inputs else self.signal, "image": self.image}, tmp)
        os.replace(tmp, self.path)

    def encode_stream(self, records: Iterable[Record], wanted: set[str] | None = None,
                      progress: bool = False, total: int | None = None) -> Iterator[Record]:
        """Pass `records` through, encoding each chunk before its records are yielded (bounded memory)."""
        chunk: list[Record] = []
        with tqdm(total=total, desc="encode", unit="rec", disable=not progress) as bar:
            for record in records:
                chunk.append(record)
                if len(chunk) == FEATURE_CHUNK:
                    yield from self._flush(chunk, wanted, bar)
                    chunk = []
            yield from self._flush(chunk, wanted, bar)

    def _flush(self, chunk: list[Record], wanted: set[str] | None, bar) -> list[Record]:
        self.add([r for r in chunk if wanted is None or r.id in wanted])
        bar.update(len(chunk))
        return chunk


def item_sample(item: Item, model: HeartcareGPT, tokenizer, cache: FeatureCache,
                with_answer: bool = True) -> Sample:
    """The tokenized sample of one item (prompt only when `with_answer` is False, for evaluation)."""
    kinds = input_kinds(item, cache.images)
    record_ids = item.record_ids_per_input()
    missing = [rid for rid in record_ids if rid not in cache]
    if missing:
        raise ValueError(f"item {item.id}: no encoder features for records {missing}")
    signals = [cache.signal[rid] for rid, kind in zip(record_ids, kinds) if kind == "signal"]
    images = [cache.image[rid] for rid, kind in zip(record_ids, kinds) if kind == "image"]
    prompt, answer = item_prompt(item, tokenizer, cache.images, answer=with_answer)
    per_image = model.projector.image_tokens
    lengths = [model.signal_length(x) if cache.signal_inputs else x.shape[0] for x in signals]
    prompt_ids = build_input_ids(tokenizer, prompt, model.spans, lengths, [f.shape[0] * per_image for f in images])
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] if answer else []
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    if cache.signal_inputs:
        return Sample(prompt_ids + answer_ids, labels, [], images, signal_inputs=signals)
    return Sample(prompt_ids + answer_ids, labels, signals, images)
