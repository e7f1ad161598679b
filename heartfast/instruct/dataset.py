"""Build instruction items for a stream of records: single-record tasks as records arrive, comparisons at the end.

Records are read one at a time (PTB-XL does not fit in memory at 500 Hz); only their facts are kept for the
comparison pass. Output is deterministic for a given seed and record order: every random choice comes from
a generator seeded by (seed, record id, task).
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping

from tqdm import tqdm

from heartfast.instruct import builders
from heartfast.instruct.comparison import comparison_item
from heartfast.instruct.grounded import grounded_item
from heartfast.instruct.facts import RecordFacts, record_facts
from heartfast.instruct.items import TASKS, Item
from heartfast.instruct.measured import (
    Measured, MeasurementCache, as_measured, measure_batch, truth_measurements,
)
from heartfast.instruct.splits import PatientSplitter
from heartfast.instruct.templates import TEMPLATES

MeasurementSource = Callable[[object], object] | Mapping[str, object] | None
MEASURE_CHUNK = 64   # records measured per batched call


def _with_truth(truth: list[Measured], measured: list[Measured]) -> list[Measured]:
    """Ground-truth global values replace measured ones of the same name; everything else is kept."""
    exact = {m.name for m in truth}
    return truth + [m for m in measured if m.lead is not None or m.name not in exact]


def _auto_measure(records: list, cache: MeasurementCache | None) -> list[list[Measured]]:
    keys = [f"{r.database}:{r.id}" for r in records]
    known = [cache.get(k) if cache is not None else None for k in keys]
    todo = [i for i, m in enumerate(known) if m is None]
    for i, measured in zip(todo, measure_batch([records[i] for i in todo])):
        known[i] = measured
        if cache is not None:
            cache.add(keys[i], measured)
    return known


def measurements_for(records: list, source: MeasurementSource | str = "auto",
                     cache: MeasurementCache | None = None) -> list[list[Measured]]:
    """Measurements of each record: from `source` (a callable record -> measurements, or a mapping record
    id -> measurements; "auto" runs the project's measurement module, batched, reusing and filling `cache`;
    None: none), with a synthetic record's exact ground truth (`extra["truth"]`) taking the place of the
    measured global values."""
    if source is None:
        measured: list[list[Measured]] = [[] for _ in records]
    elif source == "auto":
        measured = _auto_measure(records, cache)
    else:
        measured = [as_measured(source(r) if callable(source) else source.get(r.id)) for r in records]
    return [_with_truth(truth_measurements(r), m) for r, m in zip(records, measured)]


def _chunks(records: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random(":".join((str(seed), *parts)))


def record_items(record, facts: RecordFacts, seed: int, per_record: int, tasks: frozenset[str]) -> list[Item]:
    """All single-record items of one record (up to `per_record` per task, distinct templates)."""
    items = []
    prefix = f"{record.database}:{record.id}"
    for task in TASKS:
        if task not in tasks or task == "ComparisonQA":
            continue
        rng = _rng(seed, record.database, record.id, task)
        n_templates = len(TEMPLATES[task])
        for k, index in enumerate(rng.sample(range(n_templates), min(per_record, n_templates))):
            item_id = f"{prefix}/{task}/{k}"
            modality = rng.choice(("signal", "image"))
            item = _build(task, record, facts, rng, index, modality, item_id)
            if item is not None:
                items.append(item)
    return items


def _build(task, record, facts, rng, index, modality, item_id) -> Item | None:
    for group, (closed, open_) in builders.GROUP_TASKS.items():
        if task == closed:
            return builders.group_closed(facts, group, rng, index, modality, item_id)
        if task == open_:
            return builders.group_open(facts, group, rng, index, modality, item_id)
    if task == "AxisClosedQA":
        return builders.axis_closed(facts, rng, index, modality, item_id)
    if task == "RateClosedQA":
        return builders.rate_closed(facts, rng, index, modality, item_id)
    if task == "NoiseClosedQA":
        return builders.noise_closed(facts, rng, index, modality, item_id)
    if task == "ReportGeneration":
        return builders.report_item(facts, rng, index, modality, item_id)
    if task == "GroundedInterpretation":
        return grounded_item(facts, rng, index, item_id)
    if task == "SignalForecasting":
        return builders.forecast_item(record, facts, rng, index, item_id)
    raise ValueError(f"unknown task {task!r}")


def comparison_items(all_facts: list[RecordFacts], seed: int, per_record: int) -> list[Item]:
    """Pairs within one split: each record with another record of the same patient where one exists, and
    with a record of a different patient."""
    by_split: dict[str, list[RecordFacts]] = defaultdict(list)
    for facts in all_facts:
        by_split[facts.split].append(facts)
    items = []
    for group in by_split.values():
        by_patient: dict[str, list[RecordFacts]] = defaultdict(list)
        for facts in group:
            by_patient[facts.patient].append(facts)
        for facts in group:
            rng = _rng(seed, facts.database, facts.record_id, "ComparisonQA")
            partners = []
            same = [f for f in by_patient[facts.patient] if f.record_id != facts.record_id]
            if same:
                partners.append((rng.choice(same), "same patient"))
            if len(by_patient) > 1:
                for _ in range(20):
                    other = group[rng.randrange(len(group))]
                    if other.patient != facts.patient:
                        partners.append((other, "different patients"))
                        break
            for k in range(per_record):
                for j, (other, pairing) in enumerate(partners):
                    item_id = f"{facts.database}:{facts.record_id}+{other.record_id}/ComparisonQA/{k}.{j}"
                    item = comparison_item(facts, other, rng, item_id, pairing)
                    if item is not None:
                        items.append(item)
    return items


def build_items(records: Iterable, seed: int = 0, per_record: int = 1, tasks: Iterable[str] | None = None,
                measurements: MeasurementSource | str = "auto", progress: bool = False,
                total: int | None = None, cache: MeasurementCache | None = None) -> Iterator[Item]:
    """Items of every task type for `records` (heartfast.io.Record objects), in a deterministic order.
    Measurements taken with `measurements="auto"` are kept in `cache` (and read back from it on a rerun)."""
    wanted = frozenset(tasks or TASKS)
    unknown = wanted - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task types: {sorted(unknown)}; known: {', '.join(TASKS)}")
    splitter = PatientSplitter()
    all_facts = []
    with tqdm(total=total, disable=not progress, desc="instruct", unit="rec") as bar:
        for chunk in _chunks(records, MEASURE_CHUNK):
            for record, measured in zip(chunk, measurements_for(chunk, measurements, cache)):
                facts = record_facts(record, splitter(record), measured)
                all_facts.append(facts)
                yield from record_items(record, facts, seed, per_record, wanted)
            bar.update(len(chunk))
    if "ComparisonQA" in wanted:
        yield from comparison_items(all_facts, seed, per_record)


def count_table(items: Iterable[Item]) -> str:
    """Per-task counts by split as a text table."""
    counts: Counter = Counter((item.task, item.split) for item in items)
    splits = ("train", "val", "test")
    lines = [f"{'task':<24}" + "".join(f"{s:>8}" for s in splits) + f"{'total':>8}"]
    for task in TASKS:
        row = [counts[(task, s)] for s in splits]
        if sum(row):
            lines.append(f"{task:<24}" + "".join(f"{n:>8}" for n in row) + f"{sum(row):>8}")
    totals = [sum(counts[(t, s)] for t in TASKS) for s in splits]
    lines.append(f"{'all':<24}" + "".join(f"{n:>8}" for n in totals) + f"{sum(totals):>8}")
    return "\n".join(lines)
