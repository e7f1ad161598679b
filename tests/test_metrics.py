"""Metrics on hand-computed cases; ROUGE-L equal to the rouge-score package's."""
from __future__ import annotations

import math

import pytest

from heartfast.evaluate.choice import parse_choice
from heartfast.evaluate.multilabel import (
    label_f1, roc_auc, superclass_scores, superclasses_in_text,
)
from heartfast.evaluate.text_metrics import corpus_bleu, lcs_length, rouge_l

OPTIONS = ["Sinus rhythm", "Sinus tachycardia", "Atrial fibrillation", "Normal ECG"]


@pytest.mark.parametrize("answer, letter", [
    ("C", "C"), ("C:", "C"), ("(C)", "C"), ("c", "C"), ("Answer: C", "C"), ("The answer is C.", "C"),
    ("The answer is (B)", "B"), ("option b.", "B"), ("C. Atrial fibrillation", "C"), ("B) sinus tachycardia", "B"),
    ("atrial fibrillation", "C"), ("The tracing shows sinus tachycardia.", "B"), ("Sinus rhythm", "A"),
    ("A normal ECG", "D"), ("The answer is a normal ECG", "D"), ("I would pick (A) here", "A"),
    ("", None), ("I am not sure", None), ("Sinus rhythm or atrial fibrillation", None),
])
def test_parse_choice(answer, letter):
    assert parse_choice(answer, OPTIONS) == letter


SENTENCES = [
    ("Sinus rhythm. Left axis deviation. Left anterior fascicular block.",
     "Sinus rhythm with left anterior fascicular block and left axis deviation."),
    ("Atrial fibrillation with rapid ventricular response, heart rate 132 bpm.",
     "Atrial fibrillation at a ventricular rate of about 130/min."),
    ("Inferior myocardial infarction (highly likely), age undetermined.",
     "Inferior MI is possible; ST-T changes in II, III and aVF."),
    ("Normal ECG.", "Within normal limits."),
    ("QRS duration 144 ms, complete left bundle branch block.", "Complete LBBB (QRS 0.14 s)."),
    ("Sinus bradycardia at 48 bpm; otherwise normal ECG.", "Sinus bradycardia, normal ECG otherwise."),
    ("T-wave inversion in V1-V3, non-specific ST changes.", "Non-specific ST-T changes with inverted T waves V1–V3."),
    ("Left ventricular hypertrophy with strain pattern.", "Voltage criteria for LVH; repolarisation abnormality."),
    ("Première anomalie: bloc de branche droit.", "Right bundle branch block."),
    ("", "Sinus rhythm."),
    ("1st degree AV block, PR interval 224 ms.", "First degree AV block (PR 224 ms), sinus rhythm, rate 62."),
    ("the the the the", "the cat the cat"),
]


@pytest.mark.parametrize("prediction, reference", SENTENCES)
def test_rouge_l_equals_rouge_score(prediction, reference):
    from rouge_score import rouge_scorer

    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert rouge_l(prediction, reference) == pytest.approx(expected, abs=1e-12)


def test_lcs_and_rouge_hand_case():
    assert lcs_length("a b c d e".split(), "a c e x".split()) == 3
    # 4 tokens each, LCS "the cat on mat" = 4 of 6 / 6 tokens -> P = R = 4/6
    assert rouge_l("the cat sat on the mat", "the cat is on a mat") == pytest.approx(4 / 6)


def test_corpus_bleu_hand_computed():
    # unigrams 5/6 (one "the" clipped), bigrams 3/5, trigrams 2/4, 4-grams 1/3; add-one for n >= 2; BP = 1
    expected = (5 / 6 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(expected)
    # too short for 3- and 4-grams: those precisions are (0 + 1) / (1 + 1), as in NLTK
    assert corpus_bleu(["sinus rhythm"], ["sinus rhythm"]) == pytest.approx((1 * 1 * 0.5 * 0.5) ** 0.25)
    # brevity penalty: 2 tokens against 4
    short = corpus_bleu(["sinus rhythm"], ["sinus rhythm , normal"])
    assert short == pytest.approx(math.exp(1 - 4 / 2) * (1 * 1 * 0.5 * 0.5) ** 0.25)
    assert corpus_bleu(["sinus rhythm with normal rate"], ["sinus rhythm with normal rate"]) == pytest.approx(1.0)
    assert corpus_bleu(["xyz"], ["sinus rhythm"]) == 0.0


def test_corpus_bleu_equals_nltk_method2():
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    from heartfast.evaluate.text_metrics import bleu_tokens

    predictions = [p for p, _ in SENTENCES] + ["Normal ECG", "Sinus"]
    references = [r for _, r in SENTENCES] + ["Sinus rhythm with normal rate.", "Sinus rhythm."]
    expected = nltk_bleu.corpus_bleu([[bleu_tokens(r)] for r in references], [bleu_tokens(p) for p in predictions],
                                     smoothing_function=nltk_bleu.SmoothingFunction().method2)
    assert corpus_bleu(predictions, references) == pytest.approx(expected, rel=1e-9)


def test_roc_auc_hand_case():
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert roc_auc([1, 0, 1, 0], [1, 1, 0, 0]) == pytest.approx(0.5)   # hard predictions: (TPR + TNR) / 2
    assert roc_auc([1, 1], [1, 0]) is None


def test_superclass_scores_hand_case():
    truths = [{"NORM"}, {"MI", "CD"}, {"STTC"}, {"HYP"}]
    preds = [{"NORM"}, {"MI"}, {"NORM"}, {"HYP", "CD"}]
    scores = superclass_scores(truths, preds)
    # NORM: TPR 1, TNR 2/3 -> 5/6; MI 1; STTC 0.5; CD: TPR 0, TNR 2/3 -> 1/3; HYP 1
    assert scores["macro_auc"] == pytest.approx((5 / 6 + 1 + 0.5 + 1 / 3 + 1) / 5)
    # F1: NORM 2/3, MI 1, STTC 0, CD 0, HYP 1
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 + 0 + 0 + 1) / 5)
    assert scores["hamming_loss"] == pytest.approx(4 / 20)
    # classes nobody has or predicts do not count as perfect F1
    silent = superclass_scores([{"NORM"}, set()], [set(), set()])
    assert silent["macro_f1"] == 0.0 and silent["macro_auc"] == pytest.approx(0.5)
    assert silent["hamming_loss"] == pytest.approx(1 / 10)


def test_superclasses_in_text():
    text = ("Sinus rhythm. Inferior myocardial infarction is possible. No left bundle branch block. "
            "Left ventricular hypertrophy; ischemic ST-T changes in V5.")
    assert superclasses_in_text(text) == {"MI", "HYP", "STTC"}
    assert superclasses_in_text("Normal ECG.") == {"NORM"}
    assert superclasses_in_text("Abnormal ECG with first degree AV block") == {"CD"}


def test_label_f1():
    assert label_f1({"IMI", "SR"}, "Sinus rhythm. Inferior myocardial infarction.") == pytest.approx(1.0)
    assert label_f1({"IMI", "SR"}, "Sinus rhythm.") == pytest.approx(2 / 3)
    assert label_f1(set(), "Normal waveform morphology.") == pytest.approx(1.0)
    assert label_f1(set(), "A") == 0.0


def test_bertscore_with_tiny_local_bert(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = "sinus rhythm normal ecg atrial fibrillation left bundle branch block with rate".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    BertTokenizerFast(vocab=vocab).save_pretrained(tmp_path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(tmp_path)
    from heartfast.evaluate.text_metrics import BertScorer

    scorer = BertScorer(tmp_path)
    assert scorer.f1("sinus rhythm normal ecg", "sinus rhythm normal ecg") == pytest.approx(1.0, abs=1e-5)
    other = scorer.f1("atrial fibrillation with rate", "left bundle branch block")
    assert other < 0.999
