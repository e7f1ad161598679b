"""Reading the chosen option out of a free-text answer to a closed question."""
from __future__ import annotations

import re

LETTERS = "ABCD"
_WHOLE = re.compile(r"^\W*\(?([A-D])\)?\W*$", re.IGNORECASE)
_ANSWER_IS = re.compile(r"\b(?i:answer|option|choice)\b\s*(?i:is|would be)?\s*[:\-]?\s*\(?"
                        r"(?:([A-D])\b|([a-d])(?=\s*(?:[.:)]|$)))")
_LEADING = re.compile(r"^\s*\(?([A-D])(?:\)|\s*[.:\]]|\s*$)")
_ANYWHERE = re.compile(r"\(([A-D])\)|(?<![\w'])([A-D])[.:)](?=\s|$)")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def parse_choice(answer: str, options: list[str]) -> str | None:
    """The option letter an answer picks, or None.

    Accepted, in this order: a bare letter ("C", "C:", "(C)"), "Answer: C" / "The answer is C.", a leading
    "C." / "C)" / "(C)", the text of exactly one option (longest match wins where one option's text contains
    another's), then a lone "(C)" or "C." anywhere. "A normal ECG" is not read as option A.
    """
    text = answer.strip()
    for pattern in (_WHOLE, _ANSWER_IS, _LEADING):
        m = pattern.search(text)
        if m:
            return next(g for g in m.groups() if g).upper()
    said = f" {_norm(text)} "
    hits = [(len(_norm(o)), LETTERS[i]) for i, o in enumerate(options) if _norm(o) and f" {_norm(o)} " in said]
    if hits:
        hits.sort(reverse=True)
        longest = [h for h in hits if h[0] == hits[0][0]]
        others_inside = all(_norm(options[LETTERS.index(h[1])]) in _norm(options[LETTERS.index(hits[0][1])])
                            for h in hits)
        if len(longest) == 1 and others_inside:
            return hits[0][1]
    letters = {a or b for a, b in _ANYWHERE.findall(text)}
    return letters.pop() if len(letters) == 1 else None
