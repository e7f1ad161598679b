"""`heartfast bench build` and `heartfast evaluate`: held-out records, subsets, and the scale of every metric."""
from __future__ import annotations

import json

import pytest

from heartfast.cli import main
from heartfast.evaluate.bench import held_out, read_bench
from heartfast.evaluate.harness import evaluate
from heartfast.io import LEADS_12, Record


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    pytest.importorskip("heartfast.signal.synthetic")
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "build", "synthetic:12:5", "--out", str(out)]) == 0
    return out


def _write_answers(path, answers: dict[str, str]) -> None:
    path.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in answers.items()))


def test_bench_subsets(bench_dir):
    pairs = read_bench(bench_dir)
    manifest = json.loads((bench_dir / "manifest.json").read_text())
    assert manifest["items"] == len(pairs) and manifest["records"] == 12
    subsets = {s for s, _ in pairs}
    assert subsets == {"Bench-S", "Bench-I", "Bench-C", "Grounding"}
    signal = {i.id.split("/", 1)[1]: i for s, i in pairs if s == "Bench-S" and i.task != "SignalForecasting"}
    image = {i.id.split("/", 1)[1]: i for s, i in pairs if s == "Bench-I"}
    assert signal.keys() == image.keys()
    assert all(signal[k].question == image[k].question and image[k].inputs == ["image"] for k in image)
    assert all(i.modality in ("signal", "image", "both") for _, i in pairs)


def test_perfect_and_trivial_answers(bench_dir, tmp_path, capsys):
    pairs = read_bench(bench_dir)
    perfect = evaluate(pairs, {i.id: i.answer for _, i in pairs})
    assert perfect["closed_accuracy"] == pytest.approx(100.0) and perfect["missing"] == 0
    for subset, tasks in perfect["subsets"].items():
        for task, metrics in tasks.items():
            if "rougeL" in metrics:
                assert metrics["rougeL"] == pytest.approx(100.0) and metrics["bleu4"] > 0.0
                if task in ("ReportGeneration", "GroundedInterpretation"):   # long enough for 4-grams
                    assert metrics["bleu4"] == pytest.approx(100.0)
                assert metrics["label_f1"] > 90.0
    grounding = perfect["subsets"]["Grounding"]["GroundedInterpretation"]
    assert grounding["grounded_pct"] == pytest.approx(100.0) and grounding["interval_mae_ms"] < 1.0
    assert perfect["subsets"]["Bench-S"]["SignalForecasting"]["mae_mv"] < 0.01

    answers = tmp_path / "always_a.jsonl"
    _write_answers(answers, {i.id: "A" for _, i in pairs})
    out_json = tmp_path / "scores.json"
    assert main(["evaluate", str(answers), "--bench", str(bench_dir), "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "Bench-C" in table and "ComparisonQA" in table
    trivial = json.loads(out_json.read_text())
    assert trivial["closed_accuracy"] < 60.0
    assert trivial["subsets"]["Grounding"]["GroundedInterpretation"]["lead_coverage"] == 0.0


def test_missing_answers_are_counted(bench_dir):
    pairs = read_bench(bench_dir)
    results = evaluate(pairs, {})
    assert results["missing"] == len(pairs) and results["closed_accuracy"] == 0.0


def test_held_out_uses_the_test_split_of_real_databases():
    import numpy as np

    def record(rid, fold, database="ptb-xl"):
        return Record(rid, np.zeros((12, 10), np.float32), 100.0, LEADS_12, database=database,
                      patient_id=rid, fold=fold)

    records = [record("1", 10), record("2", 3), record("3", 9), record("4", None, "synthetic")]
    assert [r.id for r in held_out(records)] == ["1", "4"]
    assert [r.id for r in held_out(records, "val")] == ["3", "4"]
