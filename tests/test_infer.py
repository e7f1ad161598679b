"""`heartfast infer`: a bench answered by the engine, resumable, bad records reported and skipped."""
import json
import shutil

import pytest
import torch

from heartfast.cli import main


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from heartfast.model.presets import build_model

    torch.manual_seed(0)
    model, tokenizer = build_model("tiny")
    path = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(path, tokenizer)
    return path


def test_bench_answers_resume_and_score(tiny_checkpoint, tmp_path, capsys):
    bench, answers = tmp_path / "bench", tmp_path / "answers.jsonl"
    assert main(["bench", "build", "synthetic:3:7", "--out", str(bench)]) == 0
    args = ["infer", "--model", str(tiny_checkpoint), "--bench", str(bench), "--out", str(answers),
            "--limit", "6", "--max-tokens", "4", "--batch", "4", "--quiet"]
    assert main(args) == 0
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    assert main(args[:-5] + ["--limit", "8", "--max-tokens", "4", "--quiet"]) == 0   # resumes: only 2 more
    out = capsys.readouterr().out
    assert "answered 2 items" in out and "6 already there" in out
    assert len(answers.read_text().splitlines()) == 8
    assert main(["evaluate", str(answers), "--bench", str(bench)]) == 0


def test_records_with_a_bad_one_are_skipped(tiny_checkpoint, shared_data, tmp_path, capsys):
    source = shared_data / "ptb-xl" / "records100" / "00000"
    for name in ("00001_lr", "00002_lr"):
        for ext in (".hea", ".dat"):
            shutil.copy(source / (name + ext), tmp_path / (name + ext))
    (tmp_path / "00002_lr.dat").write_bytes((tmp_path / "00002_lr.dat").read_bytes()[:1000])
    answers = tmp_path / "answers.jsonl"
    assert main(["infer", "--model", str(tiny_checkpoint), "--records", str(tmp_path), "--out", str(answers),
                 "--max-tokens", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "answered 1 items" in out and "bad record 00002_lr" in out
    assert [json.loads(line)["id"] for line in answers.read_text().splitlines()] == ["00001_lr/q"]
