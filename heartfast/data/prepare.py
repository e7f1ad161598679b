"""`prepare`: records of a source → resampled dataset shards, with progress, resumable, bad records skipped.

Shard k always holds the source's records [k·shard_size, (k+1)·shard_size) minus the bad ones, so a
resumed run knows which records a finished shard covers without reading them. Finished shards (listed
in the manifest with matching checksums) are skipped; a shard cut off midway is simply redone.
"""
from __future__ import annotations

import dataclasses
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heartfast.data.shards import FORMAT, read_manifest, shard_is_intact, write_manifest, write_shard
from heartfast.io.record import Annotations, ECGDataError, Record
from heartfast.io.sources import RecordRef, list_records


@dataclass
class PrepareResult:
    out: Path
    records: int = 0                 # records in the finished dataset
    shards_written: int = 0
    shards_skipped: int = 0          # already finished by an earlier run
    bad: list[dict[str, Any]] = field(default_factory=list)   # {"id", "path", "problem"} per bad record


def prepare(source: str | Path, out: str | Path, fs: float = 500.0, shard_size: int = 512,
            ptbxl_fs: int = 100, progress: bool = True) -> PrepareResult:
    """Read every record of `source`, resample to `fs`, and write shards to `out` (see module doc)."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if fs <= 0:
        raise ValueError(f"fs must be positive, got {fs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    refs = list_records(source, ptbxl_fs)
    source_key = str(source) if str(source).startswith("synthetic:") else str(Path(source).resolve())
    settings = {"source": source_key, "fs": float(fs), "shard_size": shard_size, "ptbxl_fs": ptbxl_fs,
                "source_records": len(refs)}
    manifest = _start_manifest(out, settings)
    done = {e["index"]: e for e in manifest["shards"] if shard_is_intact(out, e)}
    manifest["shards"] = sorted(done.values(), key=lambda e: e["index"])
    manifest["bad"] = [b for b in manifest["bad"] if b["shard"] in done]
    result = PrepareResult(out, shards_skipped=len(done), bad=list(manifest["bad"]))
    n_shards = -(-len(refs) // shard_size)
    bar = _progress_bar(len(refs), progress)
    bar.update(sum(len(refs[k * shard_size:(k + 1) * shard_size]) for k in done))
    for k in range(n_shards):
        if k in done:
            continue
        records, bad = _load_shard(refs[k * shard_size:(k + 1) * shard_size], k, bar)
        entry = write_shard(out, k, resample_records(records, fs))
        manifest["shards"] = sorted([*manifest["shards"], entry], key=lambda e: e["index"])
        manifest["bad"] += bad
        write_manifest(out, manifest)
        result.shards_written += 1
        result.bad += bad
    bar.close()
    result.records = sum(e["records"] for e in manifest["shards"])
    return result


def _start_manifest(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    manifest = read_manifest(out)
    if manifest is None:
        manifest = {"format": FORMAT, **settings, "shards": [], "bad": []}
        write_manifest(out, manifest)
        return manifest
    changed = {k: (manifest.get(k), v) for k, v in settings.items() if manifest.get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ECGDataError(out, f"already holds a dataset prepared with other settings ({detail}); "
                                "use another output folder")
    return manifest


def _load_shard(refs: list[RecordRef], shard: int, bar) -> tuple[list[Record], list[dict[str, Any]]]:
    records, bad = [], []
    for ref in refs:
        try:
            records.append(ref.load())
        except Exception as exc:  # a bad record is reported and skipped; the run goes on
            problem = exc.problem if isinstance(exc, ECGDataError) else f"{type(exc).__name__}: {exc}"
            where = exc.path if isinstance(exc, ECGDataError) and exc.path else ref.path
            bad.append({"shard": shard, "id": ref.id, "path": where, "problem": problem})
            bar.write(f"skipped {ref.database} record {ref.id}: {where}: {problem}", file=sys.stderr)
        bar.update(1)
    return records, bad


def resample_records(records: list[Record], fs: float) -> list[Record]:
    """Records at rate `fs`: one batched resampling call per group of equal (rate, leads, length)."""
    groups: dict[tuple[float, int, int], list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        if record.fs != fs:
            groups[(record.fs, *record.signal.shape)].append(i)
    out = list(records)
    if not groups:
        return out
    import torch

    from heartfast.signal.filters import resample

    for (fs_in, _, _), members in groups.items():
        batch = torch.from_numpy(np.stack([records[i].signal for i in members]))
        resampled = resample(batch, fs_in, fs).numpy().astype(np.float32, copy=False)
        for row, i in enumerate(members):
            out[i] = _with_rate(records[i], resampled[row], fs)
    return out


def _with_rate(record: Record, signal: np.ndarray, fs: float) -> Record:
    ratio = fs / record.fs
    extra = {**record.extra, "source_fs": record.extra.get("source_fs", record.fs)}
    return dataclasses.replace(record, signal=np.ascontiguousarray(signal), fs=fs, extra=extra,
                               annotations=_rescaled(record.annotations, ratio, signal.shape[1]))


def _rescaled(ann: Annotations | None, ratio: float, n_samples: int) -> Annotations | None:
    """Annotation sample indices moved to the new rate (rounded, clipped to the signal)."""
    if ann is None:
        return None
    move = lambda s: np.clip(np.rint(np.asarray(s) * ratio), 0, n_samples - 1).astype(np.int64)  # noqa: E731
    span = ann.annotated_range
    return Annotations(
        waves={lead: {name: move(points) for name, points in fid.items()} for lead, fid in ann.waves.items()},
        beat_samples=move(ann.beat_samples), beat_symbols=list(ann.beat_symbols),
        annotated_range=None if span is None else (int(move(span[0])), min(n_samples, int(np.rint(span[1] * ratio)))))


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc="prepare", disable=not enabled, dynamic_ncols=True)
