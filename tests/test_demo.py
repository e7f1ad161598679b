"""`heartfast demo` end to end at toy size: every stage runs, the table and plots appear, a rerun resumes."""
import json

import pytest

from heartfast.cli import main

TOY = ["--records", "40", "--bench-records", "3", "--beat-steps", "4", "--align-steps", "2", "--sft-steps", "2",
       "--warmup-steps", "2", "--max-tokens", "40", "--quiet"]


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TOY]) == 0
    printed = capsys.readouterr().out
    assert "closed-QA accuracy:" in printed and "ECGs/s" in printed and "time per stage:" in printed
    for plot in ("loss_curves.png", "accuracy.png", "ecg_answer.png"):
        assert (out / "plots" / plot).stat().st_size > 5000
    answers = (out / "answers.jsonl").read_text().splitlines()
    results = json.loads((out / "results.json").read_text())
    assert results["missing"] == 0 and results["answered"] == len(answers) > 0
    sft = (out / "sft" / "config.toml").read_text()     # sft on every task the bench asks, items weighing alike
    assert "tasks = []" in sft and 'weighting = "item"' in sft and 'measurements = "auto"' in sft

    assert main(["demo", "--out", str(out), *TOY]) == 0          # resumes: nothing is trained or answered twice
    assert "all answers were already there" in capsys.readouterr().out
    assert (out / "answers.jsonl").read_text().splitlines() == answers


@pytest.mark.slow
def test_demo_runs_on_a_real_database(shared_data, tmp_path, capsys):
    """`--data DIR`: the same pipeline on a WFDB folder (CinC 2021's 50 records: three sources, .mat signals),
    its bench built from the database's held-out split."""
    out = tmp_path / "demo"
    source = shared_data / "cinc2021"
    assert main(["demo", "--data", str(source), "--out", str(out), *TOY[4:]]) == 0
    assert "closed-QA accuracy:" in capsys.readouterr().out
    manifest = json.loads((out / "bench" / "manifest.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert manifest["source"] == str(source) and manifest["records"] > 0
    assert results["missing"] == 0 and results["answered"] == manifest["items"]
