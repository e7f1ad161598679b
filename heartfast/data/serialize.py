"""Record metadata ⇄ JSON-safe dicts (everything but the signal), for shard JSONL files."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from heartfast.io.record import Annotations, Label, Record

_LABEL_FIELDS = dataclasses.fields(Label)
_META_FIELDS = ("id", "fs", "database", "patient_id", "age", "sex", "report", "fold", "split", "path", "extra")


def record_meta(record: Record) -> dict[str, Any]:
    """All Record fields except the signal, as plain JSON types (leads kept for the signal's rows)."""
    meta = {name: _plain(getattr(record, name)) for name in _META_FIELDS}
    meta["leads"] = list(record.leads)
    meta["labels"] = [{f.name: _plain(getattr(label, f.name)) for f in _LABEL_FIELDS} for label in record.labels]
    meta["annotations"] = None if record.annotations is None else _annotations_meta(record.annotations)
    return meta


def record_from_meta(meta: dict[str, Any], signal: np.ndarray) -> Record:
    """Inverse of `record_meta`, with the signal attached."""
    fields = {name: meta.get(name) for name in _META_FIELDS}
    fields["extra"] = fields["extra"] or {}
    fields["report"] = fields["report"] or ""
    labels = [Label(**{**label, "kinds": tuple(label["kinds"])}) for label in meta.get("labels", [])]
    ann = meta.get("annotations")
    return Record(signal=signal, leads=tuple(meta["leads"]), labels=labels,
                  annotations=None if ann is None else _annotations_from_meta(ann), **fields)


def _annotations_meta(ann: Annotations) -> dict[str, Any]:
    return {
        "waves": {lead: {name: points.tolist() for name, points in fid.items()} for lead, fid in ann.waves.items()},
        "beat_samples": ann.beat_samples.tolist(),
        "beat_symbols": list(ann.beat_symbols),
        "annotated_range": None if ann.annotated_range is None else list(ann.annotated_range),
    }


def _annotations_from_meta(meta: dict[str, Any]) -> Annotations:
    waves = {lead: {name: np.asarray(points, dtype=np.int64) for name, points in fid.items()}
             for lead, fid in meta["waves"].items()}
    span = meta.get("annotated_range")
    return Annotations(waves=waves, beat_samples=np.asarray(meta["beat_samples"], dtype=np.int64),
                       beat_symbols=list(meta["beat_symbols"]),
                       annotated_range=None if span is None else (int(span[0]), int(span[1])))


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples → JSON types, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
