"""Comparison questions about two ECGs: where a finding is present, which rate is faster, axis classes."""
from __future__ import annotations

import random

from heartfast.instruct.facts import AXIS_CATEGORIES, RecordFacts
from heartfast.instruct.items import LETTERS, Item, format_options
from heartfast.instruct.templates import TEMPLATES
from heartfast.instruct.vocabulary import english_name, group_codes, overlapping

_COMPARISON_FINDING = range(0, 7)
_COMPARISON_RATE = range(7, 11)
_COMPARISON_AXIS = 11
_PAIR_INPUTS = {"signal-signal": ["signal", "signal"], "image-image": ["image", "image"],
                "signal-image": ["signal", "image"]}


def _shows(facts: RecordFacts, code: str) -> bool | None:
    """True/False where the record clearly has/lacks the finding; None where it is uncertain or overlaps."""
    match = [f for f in facts.findings if f.code == code]
    if match:
        return True if match[0].certain else None
    return None if overlapping({code}) & {f.code for f in facts.findings} else False


def comparison_item(a: RecordFacts, b: RecordFacts, rng: random.Random, item_id: str,
                    pairing: str) -> Item | None:
    """Two ECGs: where a finding is present (both / first / second / neither), which is faster, or axis."""
    kind = rng.choice(("finding", "finding", "rate", "axis"))
    modality_pair = rng.choice(tuple(_PAIR_INPUTS))
    evidence: dict = {"pairing": pairing, "inputs": modality_pair}
    if kind == "rate" and a.heart_rate is not None and b.heart_rate is not None:
        index = rng.choice(_COMPARISON_RATE)
        options = ["The first ECG", "The second ECG", "Both have a similar rate (within 5 bpm)",
                   "Neither shows a measurable rate"]
        diff = a.heart_rate - b.heart_rate
        answer = options[2] if abs(diff) <= 5 else options[0] if diff > 0 else options[1]
        evidence["heart_rate"] = [a.heart_rate, b.heart_rate]
        fields: dict = {}
    elif kind == "axis" and a.axis and b.axis:
        index = _COMPARISON_AXIS
        options = ["Both ECGs have the same axis category", "Only the first ECG has a normal axis",
                   "Only the second ECG has a normal axis", "Neither ECG has a normal axis"]
        normal = AXIS_CATEGORIES[0]
        answer = (options[0] if a.axis == b.axis else options[1] if a.axis == normal
                  else options[2] if b.axis == normal else options[3])
        evidence["axis"] = [a.axis, b.axis]
        fields = {}
    else:
        present = [f.code for f in (*a.findings, *b.findings) if f.scp and f.certain]
        absent = [c for g in ("diagnosis", "rhythm", "waveform") for c in group_codes(g)]
        candidates = sorted(set(present)) + rng.sample(absent, 3)
        rng.shuffle(candidates)
        for code in candidates:
            in_a, in_b = _shows(a, code), _shows(b, code)
            if in_a is not None and in_b is not None:
                break
        else:
            return None
        name = english_name(code)
        index = rng.choice(_COMPARISON_FINDING)
        options = [f"Both ECGs show {name}", f"Only the first ECG shows {name}",
                   f"Only the second ECG shows {name}", f"Neither ECG shows {name}"]
        answer = options[0] if in_a and in_b else options[1] if in_a else options[2] if in_b else options[3]
        evidence["finding"] = code
        fields = {"finding": name}
    rng.shuffle(options)
    correct = LETTERS[options.index(answer)]
    question = TEMPLATES["ComparisonQA"][index].format(options=format_options(options), **fields)
    inputs = _PAIR_INPUTS[modality_pair]
    modality = "both" if modality_pair == "signal-image" else inputs[0]
    return Item(item_id, "ComparisonQA", modality, [a.record_id, b.record_id], question, f"{correct}. {answer}",
                a.split, options, correct, evidence, f"ComparisonQA/{index}", inputs)
