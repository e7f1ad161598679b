"""LUDB: 12-lead records with per-lead expert P/QRS/T annotations and diagnoses.

Annotation files are `<n>.i`, `<n>.ii`, ..., `<n>.v6` (one per lead); diagnoses come from `ludb.csv`
(one column per category, one diagnosis per line) or, without it, from the header comments.
"""
from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from heartfast.io.annotations import annotated_range, read_annotation, wave_fiducials
from heartfast.io.header import read_header
from heartfast.io.record import Annotations, ECGDataError, Label, Record, canonical_lead
from heartfast.io.wfdb_reader import read_wfdb

LUDB_LEAD_FILES = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")


def read_ludb(path: str | Path, csv_path: str | Path | None = None) -> Record:
    """Record with `annotations.waves[lead]` per lead, LUDB diagnoses as Labels (system 'ludb')."""
    header = read_header(path)
    record = read_wfdb(header.path, "ludb", header)
    waves: dict[str, dict[str, np.ndarray]] = {}
    all_samples = []
    for ext in LUDB_LEAD_FILES:
        ann = read_annotation(header.record_path, ext)
        samples = np.asarray(ann.sample, dtype=np.int64)
        waves[canonical_lead(ext, header.path)] = wave_fiducials(samples, list(ann.symbol))
        all_samples.append(samples)
    record.annotations = Annotations(waves=waves, annotated_range=annotated_range(np.concatenate(all_samples)))
    tags = _header_tags(header.comments)
    record.age = _age(tags.get("age", ""), header.path)
    record.sex = tags.get("sex", "").strip().upper()[:1] or None
    rows = _csv_rows(str(csv_path)) if csv_path else {}
    record.labels = _csv_labels(rows[header.name]) if header.name in rows else _comment_labels(header.comments)
    return record


def _header_tags(comments: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for line in comments:
        match = re.fullmatch(r"<(\w+)>:\s*(.*)", line)
        if match:
            tags[match[1]] = match[2]
    return tags


def _age(text: str, path: Path) -> float | None:
    text = text.strip()
    if not text:
        return None
    match = re.fullmatch(r">?\s*(\d+(?:\.\d+)?)", text)
    if not match:
        raise ECGDataError(path, f"age {text!r} is not a number")
    return float(match[1])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@lru_cache(maxsize=4)
def _csv_rows(csv_path: str) -> dict[str, dict[str, str]]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            return {row["ID"].strip(): row for row in csv.DictReader(f)}
    except (OSError, KeyError, csv.Error) as exc:
        raise ECGDataError(csv_path, f"cannot read LUDB diagnoses table: {exc}") from None


def _csv_labels(row: dict[str, str]) -> list[Label]:
    labels = []
    for column, cell in row.items():
        if column in ("ID", "Sex", "Age") or not cell:
            continue
        for line in cell.splitlines():
            text = line.strip().rstrip(".")
            if text:
                labels.append(Label(code=_slug(text), system="ludb", description=text, kinds=(_slug(column),)))
    return labels


def _comment_labels(comments: tuple[str, ...]) -> list[Label]:
    """Diagnoses are the comment lines after '<diagnoses>:'."""
    labels, started = [], False
    for line in comments:
        if line.startswith("<diagnoses>"):
            started = True
        elif started and line.strip().rstrip("."):
            text = line.strip().rstrip(".").strip()
            rhythm = re.fullmatch(r"Rhythm:\s*(.+)", text)   # ludb.csv lists it without the prefix
            if rhythm:
                labels.append(Label(code=_slug(rhythm[1]), system="ludb", description=rhythm[1], kinds=("rhythms",)))
            else:
                labels.append(Label(code=_slug(text), system="ludb", description=text))
    return labels
