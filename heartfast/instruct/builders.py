"""Item builders: one function per task type, each turning a record's facts into an `Item` (or None).

Heartcare's rules: a closed question's correct option is the group's label with the highest likelihood
>= 60, else a "normal" variant; four options A-D; distractors never share a synonym group with any label
of the record; every question names the patient's age and sex in varied wording. Open answers and reports
grade certainty by likelihood and use SCP-ECG terms in English.
"""
from __future__ import annotations

import random

import numpy as np

from heartfast.instruct.facts import (
    AXIS_CATEGORIES, NO_NOISE, NOISE_TYPES, RATE_CATEGORIES, RecordFacts, axis_category, rate_category,
)
from heartfast.instruct.findings import Finding, certainty_phrase
from heartfast.instruct.items import LETTERS, Item, format_options
from heartfast.instruct.templates import TEMPLATES, patient_phrase
from heartfast.instruct.vocabulary import (
    NORMAL, NORMAL_VARIANTS, english_name, group_codes, overlapping,
)

GROUP_TASKS = {"diagnosis": ("DiagnosisClosedQA", "DiagnosisOpenQA"),
               "waveform": ("WaveformClosedQA", "WaveformOpenQA"),
               "rhythm": ("RhythmClosedQA", "RhythmOpenQA")}
GROUNDED_WORD_LIMIT = 300
FORECAST = {"lead": "II", "input_s": 4.0, "target_s": 2.0, "step_ms": 40.0}


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fill(task: str, index: int, facts: RecordFacts | None, rng: random.Random, **fields) -> str:
    template = TEMPLATES[task][index]
    if facts is not None:
        phrase = patient_phrase(facts.age, facts.sex, facts.over_89, rng)
        fields.update(patient=phrase, Patient=cap(phrase))
    return template.format(**fields)


def _label_evidence(findings: list[Finding]) -> list[dict]:
    return [{"code": f.code, "name": f.name, "likelihood": f.likelihood} for f in findings]


def _measure_evidence(facts: RecordFacts, names: tuple[str, ...] | None = None) -> list[dict]:
    return [{"name": m.name, "value": m.value, "unit": m.unit, "lead": m.lead} for m in facts.measured
            if names is None or m.name in names]


def _closed(task: str, facts: RecordFacts, rng: random.Random, index: int, modality: str, answer: str,
            distractors: list[str], evidence: dict, item_id: str, **fields) -> Item:
    options = [answer, *distractors]
    rng.shuffle(options)
    correct = LETTERS[options.index(answer)]
    question = _fill(task, index, facts, rng, options=format_options(options), **fields)
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
    evidence = {"labels": _label_evidence(basis), "answer_codes": sorted(codes)}
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
    return Item(item_id, task, modality, [facts.record_id], _fill(task, index, facts, rng), answer, facts.split,
                evidence={"labels": _label_evidence(in_group)}, template=f"{task}/{index}", inputs=[modality])


def axis_closed(facts: RecordFacts, rng: random.Random, index: int, modality: str, item_id: str) -> Item | None:
    if facts.axis is None:
        return None
    evidence = {"axis": facts.axis, "source": facts.axis_source,
                "measurements": _measure_evidence(facts, ("qrs_axis",))}
    distractors = [c for c in AXIS_CATEGORIES if c != facts.axis]
    return _closed("AxisClosedQA", facts, rng, index, modality, facts.axis, distractors, evidence, item_id)


def rate_closed(facts: RecordFacts, rng: random.Random, index: int, modality: str, item_id: str) -> Item | None:
    if facts.heart_rate is None:
        return None
    answer = rate_category(facts.heart_rate)
    evidence = {"measurements": _measure_evidence(facts, ("heart_rate",))}
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


def _fmt(value: float, unit: str) -> str:
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
            parts.append(f"{label} {_fmt(value, unit)}")
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
    evidence = {"labels": _label_evidence(facts.findings), "measurements": _measure_evidence(facts),
                "superclasses": sorted({f.superclass for f in facts.findings if f.superclass})}
    return Item(item_id, "ReportGeneration", modality, [facts.record_id], _fill("ReportGeneration", index, facts, rng),
                report_text(facts), facts.split, evidence=evidence, template=f"ReportGeneration/{index}",
                inputs=[modality])


# Measurement rules a diagnosis can be checked against: code -> (measurement, test, wording of the criterion).
_CRITERIA = {
    "1AVB": ("pr_interval", lambda v: v > 200, "PR > 200 ms"),
    "LPR": ("pr_interval", lambda v: v > 200, "PR > 200 ms"),
    "CLBBB": ("qrs_duration", lambda v: v >= 120, "QRS >= 120 ms"),
    "CRBBB": ("qrs_duration", lambda v: v >= 120, "QRS >= 120 ms"),
    "IVCD": ("qrs_duration", lambda v: v >= 110, "QRS >= 110 ms"),
    "IRBBB": ("qrs_duration", lambda v: 100 <= v < 120, "QRS 100-120 ms"),
    "ILBBB": ("qrs_duration", lambda v: 100 <= v < 120, "QRS 100-120 ms"),
    "WPW": ("pr_interval", lambda v: v < 120, "PR < 120 ms"),
    "STACH": ("heart_rate", lambda v: v > 100, "rate > 100 bpm"),
    "SBRAD": ("heart_rate", lambda v: v < 60, "rate < 60 bpm"),
    "SR": ("heart_rate", lambda v: 50 <= v <= 100, "rate 50-100 bpm"),
    "LNGQT": ("qtc_bazett", lambda v: v > 450, "QTc > 450 ms"),
    "LAFB": ("qrs_axis", lambda v: -90 <= v <= -45, "axis -45° to -90°"),
    "LPFB": ("qrs_axis", lambda v: v >= 90, "axis >= +90°"),
}
_NAMES = {"heart_rate": "heart rate", "pr_interval": "PR interval", "qrs_duration": "QRS duration",
          "qtc_bazett": "QTc", "qrs_axis": "QRS axis"}
_LEAD_FEATURES = (("qrs_amplitude", "QRS amplitude"), ("st_level", "ST level"), ("t_amplitude", "T amplitude"),
                  ("p_amplitude", "P amplitude"))
_LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
_CHEST = ("V1", "V2", "V3", "V4", "V5", "V6")


def _range_word(name: str, value: float, sex: str | None) -> str:
    limits = {"heart_rate": (60, 100), "pr_interval": (120, 200), "qrs_duration": (0, 119),
              "qtc_bazett": (0, 460 if sex == "F" else 450), "qrs_axis": (-30, 90), "qt_interval": (0, 1e9)}
    low, high = limits.get(name, (-1e9, 1e9))
    value = round(value)
    return "normal" if low <= value <= high else "increased" if value > high else "decreased"


def grounded_text(facts: RecordFacts) -> str | None:
    """GEM-style interpretation: rate/rhythm, intervals, axis, lead-by-lead values, then diagnoses with the
    measurements that support (or fail to support) each. At most 300 words; None without measurements."""
    if not facts.measured:
        return None
    head = []
    rhythm = [f for f in facts.findings if f.in_group("rhythm")]
    rate = facts.value("heart_rate")
    rhythm_text = graded_list(rhythm) if rhythm else "rhythm not stated"
    head.append(f"Rhythm: {rhythm_text}" + (f" at a heart rate of {rate:.0f} bpm ({_range_word('heart_rate', rate, facts.sex)})."
                                             if rate is not None else "."))
    intervals = []
    for name, label in (("pr_interval", "PR interval"), ("qrs_duration", "QRS duration"),
                        ("qt_interval", "QT interval"), ("qtc_bazett", "QTc (Bazett)")):
        value = facts.value(name)
        if value is not None:
            intervals.append(f"{label} {value:.0f} ms ({_range_word(name, value, facts.sex)})")
    if intervals:
        head.append("Intervals: " + "; ".join(intervals) + ".")
    axis = facts.value("qrs_axis")
    if axis is not None:
        head.append(f"QRS axis {_fmt(axis, 'deg')} ({axis_category(round(axis)).lower()}).")
    leads = []
    for lead in (*_LIMB, *_CHEST):
        values = [f"{label} {_fmt(float(m.value), m.unit)}" for name, label in _LEAD_FEATURES
                  for m in facts.measured if m.name == name and m.lead == lead and not isinstance(m.value, str)]
        if values:
            leads.append(f"Lead {lead}: " + ", ".join(values) + ".")
    diagnosis = []
    for f in sorted(facts.findings, key=lambda f: -f.effective_likelihood):
        if f.code not in _CRITERIA or facts.value(_CRITERIA[f.code][0]) is None:
            if f.certain and not f.in_group("rhythm"):
                diagnosis.append(f"{cap(f.name)} ({certainty_phrase(f.likelihood)}).")
            continue
        name, test, criterion = _CRITERIA[f.code]
        value = facts.value(name)
        shown = _fmt(value, "deg" if name == "qrs_axis" else "bpm" if name == "heart_rate" else "ms")
        verdict = "supported by" if test(value) else "not supported by"
        diagnosis.append(f"{cap(f.name)} ({certainty_phrase(f.likelihood)}), {verdict} the {_NAMES[name]} of "
                         f"{shown} ({criterion}).")
    if not diagnosis:
        diagnosis.append(NORMAL_VARIANTS["diagnosis"][0] + ".")
    tail = ["Diagnosis: " + " ".join(diagnosis)]
    while leads and len(" ".join(head + leads + tail).split()) > GROUNDED_WORD_LIMIT:
        leads.pop()
    text = " ".join(head + leads + tail)
    words = text.split()
    return text if len(words) <= GROUNDED_WORD_LIMIT else " ".join(words[:GROUNDED_WORD_LIMIT])


def grounded_item(facts: RecordFacts, rng: random.Random, index: int, item_id: str) -> Item | None:
    text = grounded_text(facts)
    if text is None:
        return None
    evidence = {"labels": _label_evidence(facts.findings), "measurements": _measure_evidence(facts),
                "superclasses": sorted({f.superclass for f in facts.findings if f.superclass})}
    return Item(item_id, "GroundedInterpretation", "both", [facts.record_id],
                _fill("GroundedInterpretation", index, facts, rng), text, facts.split, evidence=evidence,
                template=f"GroundedInterpretation/{index}", inputs=["signal", "image"])


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
    question = _fill("SignalForecasting", index, None, rng, lead=lead, input_s=input_s, target_s=target_s,
                     step_ms=step_ms)
    evidence = {"lead": lead, "input_s": [0.0, input_s], "target_s": [input_s, input_s + target_s],
                "step_ms": step_ms, "target": values}
    return Item(item_id, "SignalForecasting", "signal", [facts.record_id], question, answer, facts.split,
                evidence=evidence, template=f"SignalForecasting/{index}", inputs=["signal"])


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
