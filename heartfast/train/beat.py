"""Stage 1 of HeartcareGPT: train the Beat tokenizer, and measure its quality on held-out records.

Records come from any source `heartfast.io.sources` lists (PTB-XL at 500 Hz where the record exists
at that rate, else 100 Hz), or from a folder prepared by `heartfast data prepare`. Each record becomes
Beat examples through `heartfast.signal.quality.beat_windows` (250 Hz, cleaned, Beat-normalised 4 s input
+ 2 s target), cut to the preset's lengths by `fit_to_config`. Training records yield one example per 1 s
shifted crop (more views of few records); evaluation records one, at the best-quality window. Split: PTB-XL folds 9-10 are held out.

Quality: reconstruction PRD (%) and SNR (dB) per window (averaged), prediction MSE (next to the MSE of
predicting zeros), codebook perplexity and share of codes used per level.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from heartfast.io.record import ECGDataError, Record
from heartfast.model.beat import BeatConfig, BeatTokenizer
from heartfast.signal.quality import beat_normalize
from heartfast.train.loop import TrainConfig, Trainer

HELD_OUT_FOLDS = (9, 10)
CONTEXT_SECONDS = 6.0       # beat_windows input + target span
CROP_STEP_SECONDS = 1.0


@dataclass
class BeatExamples:
    inputs: torch.Tensor    # [N, 12, window]
    targets: torch.Tensor   # [N, 12, predict]

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.targets[i]


def load_records(source: str | Path, progress: bool = True) -> list[Record]:
    """Every record of a source or prepared folder (PTB-XL: the 500 Hz file where it exists)."""
    from heartfast.io.ptbxl import is_ptbxl
    from heartfast.io.sources import list_records

    path = Path(str(source))
    if (path / "manifest.json").is_file():
        from heartfast.data.shards import ShardDataset

        dataset = ShardDataset(path)
        return [dataset[i] for i in tqdm(range(len(dataset)), desc="read", disable=not progress)]
    refs = list_records(source, 100)
    if path.is_dir() and is_ptbxl(path):
        high = {r.id: r for r in list_records(source, 500)}
        refs = [high.get(r.id, r) for r in refs]
    return [r.load() for r in tqdm(refs, desc=f"read {path.name}", disable=not progress)]


def split_records(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """(train, held out): PTB-XL folds 9-10 held out; sources without folds hold out every 10th record."""
    if any(r.fold is not None for r in records):
        held = [r.fold in HELD_OUT_FOLDS for r in records]
    else:
        held = [i % 10 == 9 for i in range(len(records))]
    return ([r for r, h in zip(records, held) if not h], [r for r, h in zip(records, held) if h])


def make_examples(records: list[Record], crops: bool, progress: bool = True) -> BeatExamples:
    """Beat examples of the records as `beat_windows` makes them (4 s input + 2 s target at 250 Hz)."""
    from heartfast.signal.quality import beat_windows

    inputs, targets = [], []
    for record in tqdm(records, desc="windows", disable=not progress):
        signal = record.to_12_leads()
        span = int(round(CONTEXT_SECONDS * record.fs))
        if signal.shape[1] < span:
            raise ECGDataError(record.path or record.id, f"{record.duration_s:.1f} s is shorter than the "
                               f"{CONTEXT_SECONDS:g} s a Beat example needs")
        if crops:
            step = int(round(CROP_STEP_SECONDS * record.fs))
            batch = np.stack([signal[:, s:s + span] for s in range(0, signal.shape[1] - span + 1, step)])
        else:
            batch = signal[None]
        x, y = beat_windows(torch.as_tensor(batch), record.fs)
        inputs.append(x)
        targets.append(y)
    return BeatExamples(torch.cat(inputs).float(), torch.cat(targets).float())


def fit_to_config(inputs: torch.Tensor, targets: torch.Tensor, config: BeatConfig) -> tuple[torch.Tensor, ...]:
    """Keep the last `window_samples` of the input and the first `predict_samples` of the target, and
    re-normalise both with the kept input's statistics (a no-op for the 4 s / 2 s split itself)."""
    if inputs.shape[-1] < config.window_samples or targets.shape[-1] < config.predict_samples:
        raise ValueError(f"examples of {inputs.shape[-1]}+{targets.shape[-1]} samples are too short for "
                         f"{config.window_samples}+{config.predict_samples}")
    return beat_normalize(inputs[..., -config.window_samples:], targets[..., :config.predict_samples])


def train_beat(model: BeatTokenizer, examples: BeatExamples, config: TrainConfig) -> list[dict]:
    """Train with the paper's loss; resumes from config.out when a checkpoint is there."""

    def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    def loss_fn(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = (t.to(next(m.parameters()).device) for t in batch)
        return m(inputs, targets).loss * inputs.shape[0]

    trainer = Trainer(model, examples, collate, loss_fn, lambda batch: batch[0].shape[0], config)
    return trainer.fit(resume=True)


@torch.no_grad()
def evaluate_beat(model: BeatTokenizer, examples: BeatExamples, batch_size: int = 64) -> dict:
    """Quality of a trained tokenizer on held-out examples (see module doc)."""
    model.eval()
    device = next(model.parameters()).device
    prd, snr, pred_err, zero_err, codes = [], [], [], [], []
    for start in range(0, len(examples), batch_size):
        x = examples.inputs[start:start + batch_size].to(device)
        y = examples.targets[start:start + batch_size].to(device)
        out = model(x, y)
        err = (out.reconstruction - x).pow(2).flatten(1).sum(1)
        energy = x.pow(2).flatten(1).sum(1)
        prd.append(100 * (err / energy).sqrt())
        snr.append(10 * torch.log10(energy / err))
        pred_err.append((out.prediction - y).pow(2).flatten(1).mean(1))
        zero_err.append(y.pow(2).flatten(1).mean(1))
        codes.append(out.codes)
    all_codes = torch.cat(codes)
    return {
        "windows": len(examples),
        "prd_percent": float(torch.cat(prd).mean()),
        "snr_db": float(torch.cat(snr).mean()),
        "prediction_mse": float(torch.cat(pred_err).mean()),
        "prediction_mse_of_zeros": float(torch.cat(zero_err).mean()),
        "levels": model.quantizer.usage(all_codes),
        "codebook_size": model.config.codebook_size,
    }


def quality_table(metrics: dict) -> str:
    """Markdown table of `evaluate_beat`'s result."""
    lines = ["| metric | value |", "|---|---|",
             f"| windows | {metrics['windows']} |",
             f"| reconstruction PRD | {metrics['prd_percent']:.1f} % |",
             f"| reconstruction SNR | {metrics['snr_db']:.2f} dB |",
             f"| prediction MSE (zeros: {metrics['prediction_mse_of_zeros']:.3f}) | {metrics['prediction_mse']:.3f} |"]
    for level, usage in enumerate(metrics["levels"]):
        lines.append(f"| level {level}: perplexity / codes used | {usage['perplexity']:.1f} / "
                     f"{100 * usage['used']:.1f} % of {metrics['codebook_size']} |")
    return "\n".join(lines)


def run_beat_stage(source: str, out: str | Path, preset: str, train_config: TrainConfig,
                   progress: bool = True, **overrides) -> dict:
    """Read, window, train (resumable), save the tokenizer to out/model and evaluate on the held-out split."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = BeatConfig.preset(preset, **overrides)
    cache = out / "examples.pt"   # beat_windows output, independent of the preset
    if cache.is_file():
        cached = torch.load(cache)
        train, held = BeatExamples(*cached["train"]), BeatExamples(*cached["held_out"])
    else:
        train_records, held_records = split_records(load_records(source, progress))
        train = make_examples(train_records, crops=True, progress=progress)
        held = make_examples(held_records, crops=False, progress=progress)
        torch.save({"train": (train.inputs, train.targets), "held_out": (held.inputs, held.targets)}, cache)
    train, held = (BeatExamples(*fit_to_config(e.inputs, e.targets, config)) for e in (train, held))
    torch.manual_seed(train_config.seed)
    model = BeatTokenizer(config)
    history = train_beat(model, train, train_config)
    model.save_pretrained(out / "model")
    metrics = {"preset": preset, "steps": history[-1]["step"] if history else 0,
               "planned_steps": train_config.steps, "batch_size": train_config.batch_size,
               "train_seconds": round(sum(row.get("seconds", 0.0) for row in history), 1),
               "train_windows": len(train), "final_loss": history[-1]["loss"] if history else math.nan,
               **evaluate_beat(model, held)}
    (out / "eval.json").write_text(json.dumps(metrics, indent=1))
    return metrics
