"""Heartcare-Bench-style evaluation sets from a database's held-out records.

Bench-S and Bench-I hold the same single-record questions (closed diagnosis/waveform/rhythm/misc QA, open
QA, reports; Bench-S also forecasting) shown as signal and as image; Bench-C holds comparisons (S-S, I-I,
S-I; same or different patient); Grounding holds GEM-style grounded interpretations. Real databases
contribute their test split only (PTB-XL fold 10; others by patient hash); a synthetic source is generated
for the purpose, so all its records are used (build it with a seed not used for training data).
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from heartfast.instruct.dataset import build_items
from heartfast.instruct.items import Item
from heartfast.instruct.measured import MeasurementCache
from heartfast.instruct.splits import PatientSplitter

SUBSETS = ("Bench-S", "Bench-I", "Bench-C", "Grounding")
ITEMS_FILE = "items.jsonl"
MANIFEST_FILE = "manifest.json"


def held_out(records: Iterable, split: str = "test") -> Iterable:
    """Records of the held-out split; every record of a synthetic source."""
    splitter = PatientSplitter()
    for record in records:
        if record.database == "synthetic" or split == "all" or splitter(record) == split:
            yield record


def bench_items(records: Iterable, seed: int = 0, split: str = "test", measurements="auto",
                progress: bool = False, total: int | None = None,
                cache: MeasurementCache | None = None) -> list[tuple[str, Item]]:
    """(subset, item) pairs for the held-out records of `records`."""
    out: list[tuple[str, Item]] = []
    for item in build_items(held_out(records, split), seed=seed, measurements=measurements,
                            progress=progress, total=total, cache=cache):
        if item.task == "ComparisonQA":
            out.append(("Bench-C", item))
        elif item.task == "GroundedInterpretation":
            out.append(("Grounding", item))
        elif item.task == "SignalForecasting":
            out.append(("Bench-S", item))
        else:
            for subset, modality in (("Bench-S", "signal"), ("Bench-I", "image")):
                out.append((subset, replace(item, id=f"{subset}/{item.id}", modality=modality,
                                            inputs=[modality])))
    return out


def write_bench(pairs: list[tuple[str, Item]], out_dir: str | Path, source: str, seed: int, split: str) -> dict:
    """Write BENCH/items.jsonl (each line an item with its "subset") and BENCH/manifest.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ITEMS_FILE, "w", encoding="utf-8") as f:
        for subset, item in pairs:
            f.write(json.dumps({"subset": subset, **item.to_dict()}, ensure_ascii=False) + "\n")
    counts = Counter(f"{subset}/{item.task}" for subset, item in pairs)
    records = {rid for _, item in pairs for rid in item.record_ids}
    manifest = {"source": source, "seed": seed, "split": split, "items": len(pairs), "records": len(records),
                "counts": dict(sorted(counts.items()))}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def read_bench(path: str | Path) -> list[tuple[str, Item]]:
    """Read a bench folder (or its items.jsonl); a plain item JSONL file is read with subset "all"."""
    path = Path(path)
    file = path / ITEMS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {ITEMS_FILE} (build one with `heartfast bench build`)")
    pairs = []
    with open(file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{file}:{n}: not JSON ({exc})") from None
                pairs.append((data.get("subset", "all"), Item.from_dict(data)))
    return pairs
