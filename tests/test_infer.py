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


def test_an_interrupted_run_keeps_every_answer_finished_before_it(tiny_checkpoint, tmp_path, monkeypatch):
    """Answers are written as each request finishes, not per batch: a run interrupted while the engine pulls
    its next requests keeps what was done, and the rerun answers only the rest."""
    from heartfast.engine.batch import ItemServer, answer_items
    from heartfast.engine.engine import Engine
    from heartfast.engine.sampling import SamplingParams
    from heartfast.evaluate.bench import read_bench
    from heartfast.model.heartcare import HeartcareGPT
    from heartfast.model.vocab import load_text_tokenizer

    bench, answers = tmp_path / "bench", tmp_path / "answers.jsonl"
    assert main(["bench", "build", "synthetic:2:7", "--out", str(bench)]) == 0
    items = [item for _, item in read_bench(bench)][:8]
    model, tokenizer = HeartcareGPT.from_pretrained(tiny_checkpoint), load_text_tokenizer(tiny_checkpoint)
    params = SamplingParams(max_tokens=3)
    original, pulled = ItemServer.request, []

    def request(self, item, records):
        if len(pulled) == 6:
            raise KeyboardInterrupt
        pulled.append(item.id)
        return original(self, item, records)

    monkeypatch.setattr(ItemServer, "request", request)
    with pytest.raises(KeyboardInterrupt):   # two requests in flight at a time: the first two are done by then
        answer_items(Engine(model, tokenizer, max_seqs=2), items, "synthetic:2:7", answers, params, progress=False)
    kept = [json.loads(line)["id"] for line in answers.read_text().splitlines()]
    assert 2 <= len(kept) < 6 and set(kept) <= set(pulled[:len(kept) + 2])
    monkeypatch.setattr(ItemServer, "request", original)
    report = answer_items(Engine(model, tokenizer, max_seqs=2), items, "synthetic:2:7", answers, params,
                          progress=False)
    assert report.skipped_done == len(kept) and report.answered == len(items) - len(kept)
    assert sorted(json.loads(line)["id"] for line in answers.read_text().splitlines()) == sorted(it.id for it in items)


def test_the_record_store_keeps_recent_records_and_remembers_bad_ids():
    from heartfast.engine.batch import RecordStore

    store = RecordStore("synthetic:3:7", keep=2)
    ids = sorted(store.refs)
    first = store.get(ids[0])
    assert store.get(ids[0]) is first and store.loads == 1       # kept: read once
    store.get(ids[1])
    store.get(ids[2])                                            # ids[0] is the oldest and goes
    assert len(store.loaded) == 2 and ids[0] not in store.loaded
    again = store.get(ids[0])
    assert store.loads == 4 and again.id == first.id and (again.signal == first.signal).all()
    assert store.get("no-such-record") is None and store.bad == {"no-such-record": "not found in the source"}
