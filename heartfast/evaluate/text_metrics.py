"""Text-overlap metrics for open answers and reports: ROUGE-L, corpus BLEU-4, BERTScore-F1.

ROUGE-L follows the `rouge-score` package (lower case, non-alphanumerics to spaces, no stemming, LCS F1).
BLEU is corpus-level BLEU-4 (Papineni et al.) on lower-cased word/punctuation tokens with Lin & Och's
add-one smoothing of the 2- to 4-gram precisions and the usual brevity penalty; it equals NLTK's
`corpus_bleu(..., smoothing_function=SmoothingFunction().method2)` on the same tokens.
BERTScore-F1 (Zhang et al.) uses a local encoder's last hidden layer, greedy cosine matching, no idf
weighting and no baseline rescaling.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_BLEU_TOKEN = re.compile(r"\w+|[^\w\s]")


def rouge_tokens(text: str) -> list[str]:
    return [t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure in [0, 1]."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    lcs = lcs_length(ref, pred)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu_tokens(text: str) -> list[str]:
    return _BLEU_TOKEN.findall(text.lower())


def corpus_bleu(predictions: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 in [0, 1] with add-one smoothing for n >= 2 (Lin & Och 2004)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    matches, totals = [0] * max_n, [0] * max_n
    pred_len = ref_len = 0
    for pred, ref in zip(predictions, references):
        p, r = bleu_tokens(pred), bleu_tokens(ref)
        pred_len, ref_len = pred_len + len(p), ref_len + len(r)
        for n in range(1, max_n + 1):
            p_ngrams = Counter(tuple(p[i:i + n]) for i in range(len(p) - n + 1))
            r_ngrams = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(c, r_ngrams[g]) for g, c in p_ngrams.items())
            totals[n - 1] += max(len(p) - n + 1, 1)   # as NLTK: a hypothesis too short for n-grams counts 1
    if pred_len == 0 or matches[0] == 0:
        return 0.0
    log_p = math.log(matches[0] / totals[0])
    for n in range(1, max_n):
        log_p += math.log((matches[n] + 1) / (totals[n] + 1))
    brevity = 1.0 if pred_len >= ref_len else math.exp(1 - ref_len / pred_len)
    return brevity * math.exp(log_p / max_n)


class BertScorer:
    """BERTScore-F1 with an encoder and tokenizer saved in a local directory (no downloads)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", max_length: int = 512) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such encoder directory")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device, self.max_length = device, max_length

    def _embed(self, text: str):
        import torch

        enc = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_length,
                             return_special_tokens_mask=True)
        keep = enc.pop("special_tokens_mask")[0] == 0
        with torch.no_grad():
            hidden = self.model(**{k: v.to(self.device) for k, v in enc.items()}).last_hidden_state[0]
        hidden = hidden[keep.to(hidden.device)]
        return torch.nn.functional.normalize(hidden.float(), dim=-1)

    def f1(self, prediction: str, reference: str) -> float:
        p, r = self._embed(prediction), self._embed(reference)
        if p.shape[0] == 0 or r.shape[0] == 0:
            return 0.0
        sim = p @ r.T
        precision, recall = sim.max(dim=1).values.mean().item(), sim.max(dim=0).values.mean().item()
        return 0.0 if precision + recall <= 0 else 2 * precision * recall / (precision + recall)
