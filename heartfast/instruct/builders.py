"""Item builders for single-record questions and reports, each turning a record's facts into an `Item`.

(Grounded interpretations live in `grounded.py`, comparisons of two records in `comparison.py`.)

Heartcare's rules: a closed question's correct option is the group's label with the highest likelihood
>= 60, else a "normal" variant; four options A-D; distractors never share a synonym group with any label
of the record; every question names the patient's age and sex in varied wording. Open answers and reports
grade certainty by likelihood and use SCP-ECG terms in English.
"""
from __future__ import annotations

import random

import numpy as np

from heartfast.instruct.facts import AXIS_CATEGORIES, NO_NOISE, NOISE_TYPES, RATE_CATEGORIES, RecordFacts, rate_category
from heartfast.instruct.findings import Finding, certainty_phrase
from heartfast.instruct.items import LETTERS, Item, format_options
from heartfast.instruct.templates import TEMPLATES, patient_phrase
from heartfast.instruct.vocabulary import NORMAL, NORMAL_VARIANTS, english_name, group_codes, overlapping

GROUP_TASKS = {"diagnosis": ("DiagnosisClosedQA", "DiagnosisOpenQA"),
               "waveform": ("WaveformClosedQA", "WaveformOpenQA"),
               "rhythm": ("RhythmClosedQA", "RhythmOpenQA")}
FORECAST = {"lead": "II", "input_s": 4.0, "target_s": 2.0, "step_ms": 40.0}


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill_template(task: str, index: int, facts: RecordFacts | None, rng: random.Random, **fields) -> str:
    template = TEMPLATES[task][index]
    if facts is not None:
        phrase = patient_phrase(facts.age, facts.sex, facts.over_89, rng)
        fields.update(patient=phrase, Patient=cap(phrase))
    return template.format(**fields)


def label_evidence(findings: list[Finding]) -> list[dict]:
    return [{"code": f.code, "name": f.name, "likelihood": f.likelihood} for f in findings]


def measure_evidence(facts: RecordFacts, names: tuple[str, ...] | None = None) -> list[dict]:
    return [{"name": m.name, "value": m.value, "unit": m.unit, "lead": m.lead} for m in facts.measured
            if names is None or m.name in names]


def _closed(task: str, facts: RecordFacts, rng: random.Random, index: int, modality: str, answer: str,
            distractors: list[str], evidence: dict, item_id: str) -> Item:
    options = [answer, *distractors]
    rng.shuffle(options)
    correct = LETTERS[options.index(answer)]
    question = fill_template(task, index, facts, rng, options=format_options(options))
    return Item(item_id, task, modality, [facts.record_id], question, f"{correct}. {answer}", facts.split,
                options, correct, evidence, f"{task}/{index}", [modality])


_NORMAL_CODES = frozenset({"NORM", "SR"})


def group_answer(facts: RecordFacts, group: str,
                 rng: random.Random) -> tuple[str, set[str], list[Finding]] | None:
    """Correct option of a group question: (text, codes it names, findings it rests on).

    Stricter than Heartcare's rule in one case: a "normal" diagnosis or waveform answer is given only when
    the record has no certain abnormal finding in any group (a sinus-bradycardia record with no diagnostic
    label gets no diagnosis question rather than "Normal ECG"); then None is returned.
    """
    in_group = [f for f in facts.findings if f.in_group(group)]
    certain = [f for f in in_group if f.certain]
    if certain:
        best = max(certain, key=lambda f: f.effective_likelihood)
        return cap(best.name), {best.code}, [best]
    if group != "rhythm" and _has_abnormal(facts):
        return None
    return rng.choice(NORMAL_VARIANTS[group]), {NORMAL}, in_group


def distractor_pool(facts: RecordFacts, group: str, answer_codes: set[str]) -> list[str]:
    """Group statements that neither are nor overlap any label of the record or the answer."""
    excluded = overlapping({f.code for f in facts.findings} | answer_codes)
    names = {f.name.lower() for f in facts.findings}
    return [c for c in group_codes(group) if c not in excluded and english_name(c).lower() not in names]


def group_closed(facts: RecordFacts, group: str, rng: random.Random, index: int, modality: str,
                 item_id: str) -> Item | None:
    chosen = group_answer(facts, group, rng)
    if chosen is None:
        return None
    answer, codes, basis = chosen
    pool = distractor_pool(facts, group, codes)
    if len(pool) < 3:
        return None
    distractors = [cap(english_name(c)) for c in rng.sample(pool, 3)]
    evidence = {"labels": label_evidence(basis), "answer_codes": sorted(codes)}
    return _closed(GROUP_TASKS[group][0], facts, rng, index, modality, answer, distractors, evidence, item_id)


def graded_list(findings: list[Finding]) -> str:
    """'inferior myocardial infarction (highly likely) and left atrial overload/enlargement (possible)'."""
    ordered = sorted(findings, key=lambda f: -f.effective_likelihood)
    parts = [f.name if f.likelihood is None else f"{f.name} ({certainty_phrase(f.likelihood)})"
             for f in ordered]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _has_abnormal(facts: RecordFacts) -> bool:
    return any(f.certain and f.code not in _NORMAL_CODES for f in facts.findings)


def group_open(facts: RecordFacts, group: str, rng: random.Random, index: int, modality: str,
               item_id: str) -> Item | None:
    in_group = [f for f in facts.findings if f.in_group(group)]
    if any(f.certain for f in in_group):
        answer = f"{cap(graded_list(in_group))}."
    elif group != "rhythm" and _has_abnormal(facts):
        return None
    else:
        answer = rng.choice(NORMAL_VARIANTS[group]) + "."
        if in_group:
            answer += f" Uncertain: {graded_list(in_group)}."
    task = GROUP_TASKS[group][1]
    return Item(item_id, task, modality, [facts.record_id], fill_template(task, index, facts, rng), answer, facts.split,
                evidence={"labels": label_evidence(in_group)}, template=f"{task}/{index}", inputs=[modality])


def axis_closed(facts: RecordFacts, rng: random.Random, index: int, modality: str, item_id: str) -> Item | None:
    if facts.axis is None:
        return None
    evidence = {"axis": facts.axis, "source": facts.axis_source,
                "measurements": measure_evidence(facts, ("qrs_axis",))}
    distractors = [c for c in AXIS_CATEGORIES if c != facts.axis]
    return _closed("AxisClosedQA", facts, rng, index, modality, facts.axis, distractors, evidence, item_id)


def rate_closed(facts: RecordFacts, rng: random.Random, index: int, modality: str, item_id: str) -> Item | None:
    if facts.heart_rate is None:
        return None
    answer = rate_category(facts.heart_rate)
    evidence = {"measurements": measure_evidence(facts, ("heart_rate",))}
    distractors = [c for c in RATE_CATEGORIES if c != answer]
    return _closed("RateClosedQA", facts, rng, index, modality, answer, distractors, evidence, item_id)


def noise_closed(facts: RecordFacts, rng: random.Random, index: int, modality: str, item_id: str) -> Item | None:
    """Signal quality (Heartcare's Misc "noise"): one flagged noise type, or none flagged."""
    if facts.noise is None:
        return None
    answer = rng.choice(facts.noise) if facts.noise else NO_NOISE
    pool = [n for n in (*NOISE_TYPES.values(), NO_NOISE) if n not in facts.noise and n != answer]
    if len(pool) < 3:
        return None
    evidence = {"noise": list(facts.noise)}
    return _closed("NoiseClosedQA", facts, rng, index, modality, answer, rng.sample(pool, 3), evidence, item_id)


def format_value(value: float, unit: str) -> str:
    if unit == "deg":
        return f"{value:+.0f}°"
    if unit == "mV":
        return f"{value:.2f} mV"
    return f"{value:.0f} {unit}"


def measurement_summary(facts: RecordFacts) -> str:
    """'Heart rate 72 bpm; PR interval 160 ms; ...' from the global measurements that exist."""
    names = (("heart_rate", "Heart rate"), ("pr_interval", "PR interval"), ("qrs_duration", "QRS duration"),
             ("qt_interval", "QT interval"), ("qtc_bazett", "QTc (Bazett)"), ("qrs_axis", "QRS axis"))
    parts = []
    for name, label in names:
        value = facts.value(name)
        if value is not None:
            unit = "deg" if name == "qrs_axis" else "bpm" if name == "heart_rate" else "ms"
            parts.append(f"{label} {format_value(value, unit)}")
    return "; ".join(parts)


def report_text(facts: RecordFacts) -> str:
    """An English report: rhythm, measurements, waveform and diagnostic statements graded by likelihood."""
    lines = []
    for group, heading in (("rhythm", "Rhythm"), ("waveform", "Waveform"), ("diagnosis", "Diagnosis")):
        in_group = [f for f in facts.findings if f.in_group(group)]
        if in_group and any(f.certain for f in in_group):
            lines.append(f"{heading}: {graded_list(in_group)}.")
        elif group != "rhythm" and _has_abnormal(facts):
            if in_group:
                lines.append(f"{heading}: {graded_list(in_group)}.")
        elif in_group:
            lines.append(f"{heading}: {NORMAL_VARIANTS[group][0].lower()}; {graded_list(in_group)} not excluded.")
        elif group != "waveform":
            lines.append(f"{heading}: {NORMAL_VARIANTS[group][0].lower()}.")
        if group == "rhythm" and (summary := measurement_summary(facts)):
            lines.append(f"Measurements: {summary}.")
    other = [f for f in facts.findings if not f.kinds and not f.scp]
    if other:
        lines.append(f"Other: {graded_list(other)}.")
    return " ".join(lines)


def report_item(facts: RecordFacts, rng: random.Random, index: int, modality: str, item_id: str) -> Item:
    evidence = {"labels": label_evidence(facts.findings), "measurements": measure_evidence(facts),
                "superclasses": sorted({f.superclass for f in facts.findings if f.superclass})}
    question = fill_template("ReportGeneration", index, facts, rng)
    return Item(item_id, "ReportGeneration", modality, [facts.record_id], question,
                report_text(facts), facts.split, evidence=evidence, template=f"ReportGeneration/{index}",
                inputs=[modality])


def forecast_item(record, facts: RecordFacts, rng: random.Random, index: int, item_id: str) -> Item | None:
    """Signal forecasting: from the first 4 s, the next 2 s of lead II every 40 ms, in mV."""
    lead, input_s, target_s, step_ms = (FORECAST[k] for k in ("lead", "input_s", "target_s", "step_ms"))
    if lead not in record.leads or record.duration_s < input_s + target_s:
        return None
    x = np.asarray(record.lead(lead), dtype=np.float64)
    times = input_s + np.arange(int(round(target_s * 1000 / step_ms))) * step_ms / 1000.0
    target = np.interp(times * record.fs, np.arange(x.size), x)
    values = [round(float(v), 2) for v in target]
    answer = ", ".join(f"{v:.2f}" for v in values)
    question = fill_template("SignalForecasting", index, None, rng, lead=lead, input_s=input_s, target_s=target_s,
                     step_ms=step_ms)
    evidence = {"lead": lead, "input_s": [0.0, input_s], "target_s": [input_s, input_s + target_s],
                "step_ms": step_ms, "target": values}
    return Item(item_id, "SignalForecasting", "signal", [facts.record_id], question, answer, facts.split,
                evidence=evidence, template=f"SignalForecasting/{index}", inputs=["signal"])
