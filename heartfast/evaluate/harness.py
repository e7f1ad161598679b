"""Score model answers against a bench: one row of metrics per (subset, task).

Closed and comparison questions: accuracy (%) of the parsed option. Open QA: ROUGE-L, BLEU-4 (corpus),
BERTScore-F1 (with a local encoder), label F1. Reports: the same plus ECGBench superclass macro AUC/F1 and
Hamming loss. Grounded interpretations: the same plus numeric-claim grounding (share within tolerance,
mean absolute error in ms) and lead coverage. Forecasts: MAE in mV over the target samples (missing values
count as 0 mV). Items without an answer are scored as empty answers and counted in "missing".
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from heartfast.evaluate.choice import parse_choice
from heartfast.evaluate.grounding import check_claims, extract_claims, lead_coverage
from heartfast.evaluate.multilabel import label_f1, superclass_scores, superclasses_in_text
from heartfast.evaluate.text_metrics import corpus_bleu, rouge_l
from heartfast.instruct.items import CLOSED_TASKS, Item
from heartfast.instruct.vocabulary import STATEMENTS

TEXT_TASKS = frozenset({"DiagnosisOpenQA", "WaveformOpenQA", "RhythmOpenQA", "ReportGeneration",
                        "GroundedInterpretation"})
_NUMBER = re.compile(r"[+\-−]?\d+(?:\.\d+)?")


def read_answers(path: str | Path) -> dict[str, str]:
    """answers.jsonl: one {"id": item id, "answer": text} per line."""
    answers = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                answers[str(data["id"])] = str(data.get("answer", ""))
            except (json.JSONDecodeError, KeyError) as exc:
                raise ValueError(f"{path}:{n}: expected {{\"id\": ..., \"answer\": ...}} ({exc})") from None
    return answers


def _reference_measurements(item: Item) -> dict[str, float]:
    """Global value of each measurement in the item's evidence (median over leads where only per-lead)."""
    global_values: dict[str, float] = {}
    lead_values: dict[str, list[float]] = defaultdict(list)
    for m in item.evidence.get("measurements", []):
        if isinstance(m["value"], str):
            continue
        if m["lead"] is None:
            global_values.setdefault(m["name"], float(m["value"]))
        else:
            lead_values[m["name"]].append(float(m["value"]))
    medians = {name: sorted(v)[len(v) // 2] for name, v in lead_values.items()}
    return {**medians, **global_values}


def _true_codes(item: Item) -> set[str]:
    return {label["code"] for label in item.evidence.get("labels", []) if label["code"] in STATEMENTS}


def score_group(items: list[Item], answers: list[str], bert=None) -> dict:
    """Metrics for items of one task type (answers aligned with items)."""
    task = items[0].task
    out: dict = {"n": len(items)}
    if task in CLOSED_TASKS:
        right = sum(parse_choice(a, item.options) == item.correct for item, a in zip(items, answers))
        out["accuracy"] = 100.0 * right / len(items)
        return out
    if task == "SignalForecasting":
        errors = []
        for item, a in zip(items, answers):
            target = item.evidence["target"]
            pred = [float(x.replace("−", "-")) for x in _NUMBER.findall(a)][:len(target)]
            pred += [0.0] * (len(target) - len(pred))
            errors.append(sum(abs(p - t) for p, t in zip(pred, target)) / len(target))
        out["mae_mv"] = sum(errors) / len(errors)
        return out
    refs = [item.answer for item in items]
    out["rougeL"] = 100.0 * sum(rouge_l(a, r) for a, r in zip(answers, refs)) / len(items)
    out["bleu4"] = 100.0 * corpus_bleu(answers, refs)
    if bert is not None:
        out["bertscore_f1"] = 100.0 * sum(bert.f1(a, r) for a, r in zip(answers, refs)) / len(items)
    out["label_f1"] = 100.0 * sum(label_f1(_true_codes(item), a) for item, a in zip(items, answers)) / len(items)
    with_classes = [(set(item.evidence["superclasses"]), a) for item, a in zip(items, answers)
                    if item.evidence.get("superclasses")]
    if task in ("ReportGeneration", "GroundedInterpretation") and with_classes:
        scores = superclass_scores([t for t, _ in with_classes], [superclasses_in_text(a) for _, a in with_classes])
        out.update({k: (None if v is None else 100.0 * v) for k, v in scores.items()})
    if task == "GroundedInterpretation":
        checked = within = 0
        errors: list[float] = []
        for item, a in zip(items, answers):
            result = check_claims(extract_claims(a), _reference_measurements(item))
            checked, within = checked + result["checked"], within + result["within"]
            errors += result["time_errors_ms"]
        out["claims_checked"] = checked
        out["grounded_pct"] = 100.0 * within / checked if checked else None
        out["interval_mae_ms"] = sum(errors) / len(errors) if errors else None
        out["lead_coverage"] = 100.0 * sum(lead_coverage(a) for a in answers) / len(items)
    return out


def evaluate(bench: list[tuple[str, Item]], answers: dict[str, str], bert=None) -> dict:
    """{"subsets": {subset: {task: metrics}}, "closed_accuracy": %, "closed_accuracy_by_subset": {subset: %},
    "answered": n, "missing": n}."""
    groups: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for subset, item in bench:
        groups[(subset, item.task)].append(item)
    results: dict = {"subsets": defaultdict(dict), "answered": 0, "missing": 0}
    for (subset, task), items in sorted(groups.items()):
        texts = [answers.get(item.id, "") for item in items]
        answered = sum(item.id in answers for item in items)
        results["answered"] += answered
        results["missing"] += len(items) - answered
        results["subsets"][subset][task] = score_group(items, texts, bert)
    hits: dict[str, list[bool]] = defaultdict(list)
    for subset, item in bench:
        if item.task in CLOSED_TASKS:
            hits[subset].append(parse_choice(answers.get(item.id, ""), item.options) == item.correct)
    if hits:
        every = [h for subset_hits in hits.values() for h in subset_hits]
        results["closed_accuracy"] = 100.0 * sum(every) / len(every)
        results["closed_accuracy_by_subset"] = {s: 100.0 * sum(h) / len(h) for s, h in sorted(hits.items())}
    results["subsets"] = dict(results["subsets"])
    return results


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def format_table(results: dict) -> str:
    """One line per subset/task: n, then every metric present."""
    lines = [f"{'subset':<10} {'task':<24} {'n':>6}  metrics"]
    for subset, tasks in results["subsets"].items():
        for task, metrics in tasks.items():
            shown = "  ".join(f"{k} {_number(v)}" for k, v in metrics.items() if k != "n" and v is not None)
            lines.append(f"{subset:<10} {task:<24} {metrics['n']:>6}  {shown}")
    if "closed_accuracy" in results:
        by_subset = ", ".join(f"{s} {v:.1f}%" for s, v in results["closed_accuracy_by_subset"].items())
        lines.append(f"closed-QA accuracy: {results['closed_accuracy']:.1f}% ({by_subset})")
    lines.append(f"answered {results['answered']}, missing {results['missing']}")
    return "\n".join(lines)
