"""ECGBench-style multi-label scoring: PTB-XL superclasses found in text, macro AUC/F1, Hamming loss;
and report label F1 over SCP statements found in text.

As in GEM's ECGBench, a class counts as predicted when its name (or an SCP statement of that superclass,
or a synonym) appears in the generated text, and AUC is computed on these hard 0/1 predictions (for one
class it equals (sensitivity + specificity) / 2).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from heartfast.instruct.vocabulary import (
    NORMAL, NORMAL_VARIANTS, STATEMENTS, SUPERCLASSES, find_statements, is_negated,
)

_CLASS_PATTERNS = {
    "NORM": r"\bnormal (?:ecg|electrocardiogram)\b|within normal limits|\bnorm\b",
    "MI": r"infarct|\bmi\b|\bstemi\b|\bnstemi\b|myocardial injury|subendocardial injury",
    "STTC": r"st[- ]t (?:changes?|abnormalit\w*)|ischa?emi\w*|\bsttc\b|long qt|prolonged qt|digitalis|"
            r"electrolyte|aneurysm",
    "CD": r"bundle branch block|\b[lr]?bbb\b|av block|atrioventricular block|fascicular block|hemiblock|"
          r"conduction (?:disturbance|delay|defect|abnormalit\w*)|wolff|\bwpw\b|\bcd\b",
    "HYP": r"hypertroph\w*|enlargement|atrial overload|\b[lr]vh\b|\bhyp\b",
}
_COMPILED = {c: re.compile(p) for c, p in _CLASS_PATTERNS.items()}


def superclasses_in_text(text: str) -> set[str]:
    """PTB-XL superclasses a text asserts (negated mentions such as "no infarction" do not count)."""
    lowered = text.lower()
    found = {STATEMENTS[c].superclass for c in find_statements(text) if STATEMENTS[c].superclass}
    for cls, pattern in _COMPILED.items():
        if any(not is_negated(lowered, m.start()) for m in pattern.finditer(lowered)):
            found.add(cls)
    return found


def roc_auc(truth: Sequence[int], score: Sequence[float]) -> float | None:
    """ROC AUC by the Mann-Whitney statistic (ties count one half); None where one class is absent."""
    pos = [s for t, s in zip(truth, score) if t]
    neg = [s for t, s in zip(truth, score) if not t]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def f1_score(truth: Sequence[int], pred: Sequence[int]) -> float:
    tp = sum(1 for t, p in zip(truth, pred) if t and p)
    fp = sum(1 for t, p in zip(truth, pred) if p and not t)
    fn = sum(1 for t, p in zip(truth, pred) if t and not p)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def superclass_scores(truths: Sequence[set[str]], preds: Sequence[set[str]],
                      classes: Sequence[str] = SUPERCLASSES) -> dict[str, float | None]:
    """Macro AUC (hard predictions; classes without both outcomes are skipped), macro F1 (classes neither
    present nor predicted are skipped), Hamming loss over all classes."""
    aucs, f1s = [], []
    wrong = 0
    for cls in classes:
        t = [int(cls in s) for s in truths]
        p = [int(cls in s) for s in preds]
        auc = roc_auc(t, p)
        if auc is not None:
            aucs.append(auc)
        if any(t) or any(p):
            f1s.append(f1_score(t, p))
        wrong += sum(a != b for a, b in zip(t, p))
    n = len(truths) * len(classes)
    return {"macro_auc": sum(aucs) / len(aucs) if aucs else None,
            "macro_f1": sum(f1s) / len(f1s) if f1s else None,
            "hamming_loss": wrong / n if n else None}


_NORMAL_PHRASES = tuple(p.lower() for variants in NORMAL_VARIANTS.values() for p in variants)


def statements_in_text(text: str) -> set[str]:
    """SCP codes a text names, plus the pseudo-code NORMAL where it gives a "normal" answer variant."""
    found = find_statements(text)
    lowered = text.lower()
    if any((i := lowered.find(p)) >= 0 and not is_negated(lowered, i) for p in _NORMAL_PHRASES):
        found.add(NORMAL)
    return found


def label_f1(truth: set[str], text: str) -> float:
    """F1 between a record's SCP statements and those a text names. A reference without statements (a
    "normal" answer) counts as the single label NORMAL, so an empty or off-topic answer scores 0 on it."""
    pred = statements_in_text(text)
    if truth:
        pred.discard(NORMAL)
    else:
        truth = {NORMAL}
    return 0.0 if not pred else 2 * len(truth & pred) / (len(truth) + len(pred))
