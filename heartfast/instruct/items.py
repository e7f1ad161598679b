"""The instruction item and its two export formats (plain JSONL and LLaVA-style conversations)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

TASKS: tuple[str, ...] = (
    "DiagnosisClosedQA", "DiagnosisOpenQA", "WaveformClosedQA", "WaveformOpenQA", "RhythmClosedQA",
    "RhythmOpenQA", "AxisClosedQA", "RateClosedQA", "NoiseClosedQA", "ComparisonQA", "ReportGeneration",
    "GroundedInterpretation", "SignalForecasting",
)
CLOSED_TASKS = frozenset({"DiagnosisClosedQA", "WaveformClosedQA", "RhythmClosedQA", "AxisClosedQA",
                          "RateClosedQA", "NoiseClosedQA", "ComparisonQA"})
MODALITIES: tuple[str, ...] = ("signal", "image", "both")
LETTERS = "ABCD"


@dataclass
class Item:
    """One question about one or two ECGs, with the answer and what the answer rests on.

    `inputs` lists the modality of each ECG in `record_ids` order ("signal" or "image"; a "both" item
    shows each record as signal and image). Closed items have four `options` and `correct` holds the letter.
    `evidence` names the labels (SCP codes with likelihoods) and measurements the answer was derived from.
    """

    id: str
    task: str
    modality: str
    record_ids: list[str]
    question: str
    answer: str
    split: str
    options: list[str] = field(default_factory=list)
    correct: str = ""
    evidence: dict = field(default_factory=dict)
    template: str = ""
    inputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def record_ids_per_input(self) -> list[str]:
        """Record id of each entry of `inputs` (a "both" item lists each record twice: signal, image)."""
        if len(self.inputs) == len(self.record_ids):
            return list(self.record_ids)
        per_record = len(self.inputs) // len(self.record_ids)
        return [rid for rid in self.record_ids for _ in range(per_record)]

    @classmethod
    def from_dict(cls, data: dict) -> Item:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def format_options(options: list[str]) -> str:
    """'A. ...\\nB. ...' lines shown under a closed question."""
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))


def write_jsonl(items: Iterable[Item], path: str | Path) -> int:
    """Write one JSON object per item; returns the number written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[Item]:
    with open(path, encoding="utf-8") as f:
        return [Item.from_dict(json.loads(line)) for line in f if line.strip()]


def to_llava(item: Item) -> dict:
    """LLaVA-style record: one `<image>` placeholder per ECG input (signal or image), then the question."""
    placeholders = "\n".join("<image>" for _ in item.inputs)
    pairs = list(zip(item.record_ids_per_input(), item.inputs))
    return {
        "id": item.id,
        "ecg": [rid for rid, kind in pairs if kind == "signal"],
        "image": [rid for rid, kind in pairs if kind == "image"],
        "inputs": [{"record_id": rid, "modality": kind} for rid, kind in pairs],
        "task": item.task,
        "conversations": [
            {"from": "human", "value": f"{placeholders}\n{item.question}"},
            {"from": "gpt", "value": item.answer},
        ],
    }


def write_llava(items: Iterable[Item], path: str | Path) -> int:
    """Write the items as one JSON list of LLaVA conversations; returns the number written."""
    records = [to_llava(item) for item in items]
    Path(path).write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(records)
