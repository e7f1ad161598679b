"""HeartcareGPT stages 2 and 3 on the shared Trainer: `align` (projector warm-up) and `sft` (instruction tuning).

align: the LLM and the encoders are frozen; only the DSPA projectors learn to place ECG features where
       the LLM can read them.
sft:   LoRA adapters on the decoder + the projectors (or the whole LLM with `lora.r = 0`).
With `model.train_signal_encoder = true` the signal encoder learns too, in either stage (the papers freeze
it; the tiny presets' random encoders need it to carry heart rate and rhythm irregularity).

Both train on instruction items (closed/open QA, reports, ...) with the loss on the answer tokens only.
A micro-batch is packed into one varlen row (no padding), the loss is `linear_cross_entropy` on the final
hidden states (no [tokens, vocab] fp32 logits), and the frozen encoders' features are computed once per
record (`heartfast.train.samples.FeatureCache`; for a trainable signal encoder its inputs, encoded in each
step). The trained model is written with `HeartcareGPT.save_pretrained` to OUT/model (with the tokenizer);
closed-QA accuracy on the held-out split goes to OUT/eval.json.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from heartfast.instruct.items import CLOSED_TASKS, LETTERS, Item, read_jsonl
from heartfast.model.heartcare import HeartcareGPT, MultimodalBatch, shifted_labels
from heartfast.model.lora import LoraConfig
from heartfast.train.config import StageConfig, to_toml
from heartfast.train.losses import IGNORE_INDEX, linear_cross_entropy
from heartfast.train.loop import TrainConfig, Trainer
from heartfast.train.packing import Sample, pack
from heartfast.train.samples import FeatureCache, item_sample
from heartfast.train.warmup import warm_up_signal_encoder


class AnswerLoss(nn.Module):
    """Summed next-token loss over the labelled (answer) tokens of a packed batch.

    `per_item`: each token weighs 1 / its item's answer length, so the sum counts every item once: a closed
    question's one-letter answer weighs what a 700-token report does (with plain token sums, long answers
    take nearly all the gradient of a mixed batch). A module, so DDP can wrap it: its forward is the whole
    step's computation.
    """

    def __init__(self, model: HeartcareGPT, chunk_size: int = 1024, per_item: bool = False) -> None:
        super().__init__()
        self.model, self.chunk_size, self.per_item = model, chunk_size, per_item

    def forward(self, batch: MultimodalBatch) -> torch.Tensor:
        # Only the answer rows reach the LM head (a prompt-heavy batch skips most of the vocab projection).
        # Finding them is the step's one host sync, placed before the forward so it waits for nothing else.
        targets = shifted_labels(batch.labels, batch.cu_seqlens).reshape(-1)
        rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        weights = _per_item_weights(batch.cu_seqlens, rows) if self.per_item else None
        hidden = self.model.hidden_states(batch)   # packed rows: varlen attention through heartfast.ops
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)
        mean = linear_cross_entropy(hidden, self.model.llm.lm_head.weight, targets.index_select(0, rows),
                                    chunk_size=self.chunk_size, token_weights=weights)
        return mean * (rows.numel() if weights is None else weights.sum())


def _per_item_weights(cu_seqlens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """1 / (answer tokens of its item) for each labelled row of a packed batch (no host sync)."""
    item = _item_of(cu_seqlens, rows)
    counts = torch.zeros(cu_seqlens.numel() - 1, device=rows.device)
    counts.index_add_(0, item, torch.ones_like(item, dtype=counts.dtype))
    return 1.0 / counts[item]


def _item_of(cu_seqlens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The packed item each row index lies in."""
    return torch.searchsorted(cu_seqlens[1:].to(rows.dtype), rows, right=True)


def labelled_tokens(batch: MultimodalBatch) -> int:
    return int((shifted_labels(batch.labels, batch.cu_seqlens) != IGNORE_INDEX).sum())


def labelled_items(batch: MultimodalBatch) -> int:
    """Items of a packed batch with at least one labelled token (the per-item loss's weight)."""
    rows = (shifted_labels(batch.labels, batch.cu_seqlens).reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)
    return int(_item_of(batch.cu_seqlens, rows).unique().numel())


def stage_trainer(model: HeartcareGPT, samples: list[Sample], train: TrainConfig,
                  flops_per_sample: float | None = None, weighting: str = "token") -> Trainer:
    """The shared Trainer on packed samples with the answer-token loss (stages and cost benchmarks);
    `weighting` "item" counts every item once in the loss instead of every answer token."""
    weight_fn = {"token": labelled_tokens, "item": labelled_items}[weighting]   # config.WEIGHTINGS, checked there
    return Trainer(AnswerLoss(model, per_item=weighting == "item"), samples, pack, lambda m, b: m(b), weight_fn,
                   train, flops_per_sample)


# ---- model -----------------------------------------------------------------------------------
def load_model(config: StageConfig) -> tuple[HeartcareGPT, object]:
    """The stage's starting model: a saved HeartcareGPT directory, or a preset (seeded random init)."""
    from heartfast.model import vocab
    from heartfast.model.presets import build_model

    m = config.model
    torch.manual_seed(config.train.seed)
    if m.path:
        model, tokenizer = HeartcareGPT.from_pretrained(m.path), vocab.load_text_tokenizer(m.path)
    else:
        model, tokenizer = build_model(m.preset, llm_dir=m.llm or None, vision_dir=m.vision or None,
                                       signal_dir=m.signal_encoder or None)
    model.llm.gradient_checkpointing = m.gradient_checkpointing
    if torch.cuda.is_available():   # the encoders run once over the data; do it where training will run
        device = int(os.environ.get("LOCAL_RANK", "0"))
        if config.train.parallel == "fsdp":   # the decoder goes to the GPU shard by shard, in the trainer
            for encoder in model.encoders():
                encoder.cuda(device)
        else:
            model.cuda(device)
    return model, tokenizer


def set_trainable(model: HeartcareGPT, config: StageConfig) -> dict[str, int]:
    """Freeze/unfreeze for the stage; returns trainable and total parameter counts."""
    if config.stage == "align":
        model.requires_grad_(False)
        model.projector.requires_grad_(True)
    elif model.config.lora is not None or config.lora.r > 0:
        if model.config.lora is None:
            model.add_lora(LoraConfig(config.lora.r, config.lora.alpha, config.lora.dropout))
        else:  # continuing a LoRA model: its adapters and the projectors train
            model.requires_grad_(False)
            for name, p in model.llm.named_parameters():
                p.requires_grad_(name.endswith((".lora_A", ".lora_B")))
            model.projector.requires_grad_(True)
    else:
        model.requires_grad_(True)
    model.train_signal_encoder(config.model.train_signal_encoder)   # and freezes the rest of the encoders
    if not config.data.images and model.projector.config.kind == "heartcare":
        for name, p in model.projector.named_parameters():
            if name.startswith("image_"):
                p.requires_grad_(False)   # no image ever reaches them; DDP would wait for their gradients
    return {"trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in model.parameters())}


# ---- data ------------------------------------------------------------------------------------
def load_items_and_features(config: StageConfig, model: HeartcareGPT, cache_path: Path | None,
                            progress: bool = True) -> tuple[list[Item], FeatureCache]:
    """Instruction items (from the JSONL, or built from the records with the measurements they carry: synthetic
    truth, annotations; or, `data.measurements = "auto"`, with the measurement module's) and every needed
    record's features."""
    from heartfast.instruct.dataset import build_items
    from heartfast.io.sources import list_records

    d = config.data
    if not d.source:
        raise ValueError("data.source is empty: give --data (a records folder or synthetic:N)")
    cache = FeatureCache(model, d.images, cache_path)
    refs = list_records(d.source)
    if d.items:
        items = [it for it in read_jsonl(d.items) if not d.tasks or it.task in d.tasks]
        wanted = {rid for item in items for rid in item.record_ids}
        if any(rid not in cache for rid in wanted):
            for _ in cache.encode_stream((r.load() for r in refs), wanted, progress, len(refs)):
                pass
    else:
        records = cache.encode_stream((r.load() for r in refs), None, progress, len(refs))
        items = list(build_items(records, seed=d.seed, per_record=d.per_record, tasks=d.tasks or None,
                                 measurements=None if d.measurements == "carried" else "auto"))
    cache.save()
    return items, cache


# ---- evaluation ------------------------------------------------------------------------------
@torch.no_grad()
def closed_qa_accuracy(model: HeartcareGPT, tokenizer, items: list[Item], cache: FeatureCache,
                       batch_size: int = 32) -> dict:
    """Accuracy per task of greedy option letters: the highest-scoring letter token after each prompt.

    The letters are compared at the answer's first token ("A" .. "D" as the tokenizer spells them where an
    answer starts), which is what greedy decoding emits first.
    """
    closed = [it for it in items if it.task in CLOSED_TASKS and it.correct]
    letter_ids = torch.tensor([tokenizer(f"{letter}. x", add_special_tokens=False)["input_ids"][0]
                               for letter in LETTERS])
    device = next(model.llm.parameters()).device
    was_training = model.training
    model.eval()
    hits: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(closed), batch_size):
        chunk = closed[start:start + batch_size]
        batch = pack([item_sample(it, model, tokenizer, cache, with_answer=False) for it in chunk]).to(device)
        hidden = model.hidden_states(batch)[0, batch.cu_seqlens[1:].long() - 1]
        scores = model.llm.lm_head(hidden)[:, letter_ids.to(device)]
        for it, choice in zip(chunk, scores.argmax(-1).tolist()):
            hits[it.task].append(int(LETTERS[choice] == it.correct))
    model.train(was_training)
    report = {task: {"accuracy": sum(v) / len(v), "items": len(v)} for task, v in sorted(hits.items())}
    total = [h for v in hits.values() for h in v]
    report["all"] = {"accuracy": sum(total) / max(len(total), 1), "items": len(total)}
    return report


# ---- the stage -------------------------------------------------------------------------------
def flops_per_sample(model: HeartcareGPT, tokens_per_sample: float, full: bool) -> float:
    """Model FLOPs of one sample: 2N forward + 2N input gradients (+ 2N weight gradients when the LLM trains)."""
    n = sum(p.numel() for name, p in model.llm.named_parameters() if "embed_tokens" not in name)
    return (6.0 if full else 4.0) * n * tokens_per_sample


def run_stage(config: StageConfig, progress: bool = True) -> dict:
    """Train the stage to `config.train.steps` (resuming from OUT/latest.pt), save OUT/model, evaluate."""
    out = Path(config.train.out)
    model, tokenizer = load_model(config)
    counts = set_trainable(model, config)
    items, cache = load_items_and_features(config, model, out / "features.pt", progress)
    train_items = [it for it in items if it.split == "train"]
    if not train_items:
        raise ValueError(f"{config.data.source}: no training items (split 'train')")
    warmup = {}   # a frozen encoder is not warmed up; a checkpoint already holds the warmed (and trained) one
    if config.model.signal_warmup_steps and cache.signal_inputs and not (out / "latest.pt").is_file():
        warmup = warm_up_signal_encoder(model, cache.signal, train_items, config.model.signal_warmup_steps,
                                        seed=config.train.seed, progress=progress)
    samples = [item_sample(it, model, tokenizer, cache) for it in train_items]
    mean_tokens = sum(len(s) for s in samples) / len(samples)
    full = config.stage == "sft" and config.lora.r == 0 and model.config.lora is None
    config.train.find_unused_parameters = config.data.images
    trainer = stage_trainer(model, samples, config.train, flops_per_sample(model, mean_tokens, full),
                            config.data.weighting)
    if trainer.dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(to_toml(config))
    history = trainer.fit()
    summary = {"stage": config.stage, "steps": trainer.step, "train_items": len(samples),
               "mean_tokens": mean_tokens, **counts, "signal_warmup": warmup,
               "losses": [round(r["loss"], 5) for r in history]}
    state = trainer.full_state_dict() if trainer.sharded else None   # every process takes part in the gather
    if trainer.dist.is_main:
        if state is None:
            model.save_pretrained(out / "model", tokenizer)
        else:   # the sharded model holds pieces: save the gathered weights and evaluate a whole copy
            model.save_pretrained(out / "model", tokenizer, {k.removeprefix("model."): v for k, v in state.items()})
            model = HeartcareGPT.from_pretrained(out / "model", device=trainer.device)
        if config.evaluate:
            held_out = [it for it in items if it.split == config.data.eval_split]
            summary["eval"] = closed_qa_accuracy(model, tokenizer, held_out, cache)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
