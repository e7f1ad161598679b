"""Answering a bench (or any instruction items) with the engine: the items stream through one continuous
batch (a long answer never holds up the next questions), records are read once, bad records reported and
skipped, and each answer is appended to answers.jsonl as it is finished, so an interrupted run resumes by
skipping the ids already answered.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from heartfast.engine.engine import Engine, Request, Result
from heartfast.engine.lru import LRUCache
from heartfast.engine.sampling import SamplingParams
from heartfast.instruct.items import Item
from heartfast.instruct.prompt import input_kinds, item_prompt
from heartfast.io.record import ECGDataError, Record
from heartfast.io.sources import list_records

KEEP_RECORDS = 256   # records (and their pictures) kept for reuse by later questions


@dataclass
class BatchReport:
    answered: int = 0
    skipped_done: int = 0
    bad_records: dict[str, str] = field(default_factory=dict)   # record id -> problem
    failed_items: int = 0


def answered_ids(path: Path) -> set[str]:
    """Ids already in an answers file (a torn last line from an interrupted write is ignored)."""
    if not path.is_file():
        return set()
    done = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            done.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            continue
    return done


class RecordStore:
    """Records of a source by id, loaded on demand and kept while recently used (a bench's questions on one
    record come together); load failures are remembered, not raised."""

    def __init__(self, source: str | Path, keep: int = KEEP_RECORDS) -> None:
        self.refs = {ref.id: ref for ref in list_records(source)}
        self.loaded: LRUCache[str, Record] = LRUCache(keep)
        self.bad: dict[str, str] = {}
        self.loads = 0

    def get(self, record_id: str) -> Record | None:
        if record_id in self.bad:
            return None
        record = self.loaded.get(record_id)
        if record is not None:
            return record
        ref = self.refs.get(record_id)
        if ref is None:
            self.bad[record_id] = "not found in the source"
            return None
        try:
            record = ref.load()
        except ECGDataError as exc:
            self.bad[record_id] = str(exc)
            return None
        self.loads += 1
        self.loaded.put(record_id, record)
        return record


class ItemServer:
    """Turns items into engine requests: signals as 12-lead arrays, images rendered as the trainer renders them."""

    def __init__(self, engine: Engine, images: bool, params: SamplingParams, keep: int = KEEP_RECORDS) -> None:
        self.engine, self.params = engine, params
        model = engine.model
        self.images = images and getattr(model, "vision", None) is not None
        self._pictures: LRUCache[str, torch.Tensor] = LRUCache(keep)

    def picture(self, record: Record) -> torch.Tensor:
        picture = self._pictures.get(record.id)
        if picture is None:
            from heartfast.render.renderer import render

            size = self.engine.model.vision.config.image_size
            picture = render(record.to_12_leads()[None], record.fs, size=size)[0]
            self._pictures.put(record.id, picture)
        return picture

    def request(self, item: Item, records: dict[str, Record]) -> Request:
        signals, images, signal_ids, image_ids, fs = [], [], [], [], set()
        for rid, kind in zip(item.record_ids_per_input(), input_kinds(item, self.images)):
            record = records[rid]
            if kind == "signal":
                signals.append(record.to_12_leads())
                signal_ids.append(rid)
                fs.add(record.fs)
            else:
                images.append(self.picture(record))
                image_ids.append(rid)
        if len(fs) > 1:
            raise ValueError(f"item {item.id}: its signals have different sampling rates {sorted(fs)}")
        prompt, _ = item_prompt(item, self.engine.tokenizer, self.images)
        return Request(item.id, prompt, signals=signals, signal_fs=fs.pop() if fs else 500.0, images=images,
                       keys=signal_ids + image_ids, params=self.params)


def answer_items(engine: Engine, items: list[Item], source: str | Path, out: str | Path,
                 params: SamplingParams, images: bool = True, progress: bool = True) -> BatchReport:
    """Answer `items` into `out` (JSONL: id, answer, task, finish_reason), skipping ids already there."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = BatchReport()
    done = answered_ids(out)
    todo = [item for item in items if item.id not in done]
    report.skipped_done = len(items) - len(todo)
    store, server = RecordStore(source), ItemServer(engine, images, params)
    tasks = {item.id: item.task for item in todo}
    bar = tqdm(total=len(todo), desc="answer", unit="item", disable=not progress, dynamic_ncols=True)

    def requests() -> Iterator[Request]:
        for item in todo:
            records = {rid: store.get(rid) for rid in item.record_ids}
            if any(r is None for r in records.values()):
                report.failed_items += 1
                bar.update(1)
                continue
            yield server.request(item, records)

    with open(out, "a", encoding="utf-8") as f:
        def write(res: Result) -> None:
            f.write(json.dumps({"id": res.id, "answer": res.text, "task": tasks[res.id],
                                "finish_reason": res.finish_reason}, ensure_ascii=False) + "\n")
            f.flush()
            report.answered += 1
            bar.update(1)

        engine.generate(requests(), on_result=write, collect=False)   # answers go to the file, not memory
    bar.close()
    report.bad_records = dict(store.bad)
    return report


def record_items(records: list[str], question: str) -> list[Item]:
    """One open question per record id (for `heartfast infer --records`)."""
    return [Item(id=f"{rid}/q", task="Open", modality="both", record_ids=[rid], question=question, answer="",
                 split="test", inputs=["image", "signal"]) for rid in records]

