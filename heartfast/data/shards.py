"""Dataset shards on disk: memory-mappable signals + JSONL metadata + a checksummed manifest.

Layout of a prepared folder:
    manifest.json          settings, one entry per finished shard (file names and sha256), bad records
    shard-00000.npy        float32, 1-D: the shard's record signals ([leads, samples], C order) back to back
    shard-00000.jsonl      one line per record: Record fields (labels, annotations, ...) + offset and shape
A shard's files are written under temporary names and renamed when complete, and the manifest is
replaced atomically after each shard, so an interrupted run never leaves a half shard that looks done.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heartfast.data.serialize import record_from_meta, record_meta
from heartfast.io.record import ECGDataError, Record

FORMAT = "heartfast-shards/1"
MANIFEST = "manifest.json"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(folder: Path, index: int, records: Sequence[Record]) -> dict[str, Any]:
    """Write one shard atomically; returns its manifest entry (file names → sha256, record count)."""
    name = shard_name(index)
    metas, offset = [], 0
    for record in records:
        meta = record_meta(record)
        meta["offset"], meta["shape"] = offset, list(record.signal.shape)
        offset += record.signal.size
        metas.append(meta)
    flat = (np.concatenate([np.ascontiguousarray(r.signal, dtype=np.float32).reshape(-1) for r in records])
            if records else np.zeros(0, dtype=np.float32))
    files = {f"{name}.npy": None, f"{name}.jsonl": None}
    tmp = {f: folder / f".{f}.tmp" for f in files}
    with open(tmp[f"{name}.npy"], "wb") as f:
        np.save(f, flat)
    with open(tmp[f"{name}.jsonl"], "w", encoding="utf-8") as f:
        for meta in metas:
            f.write(json.dumps(meta, ensure_ascii=False) + "\n")
    for file, path in tmp.items():
        files[file] = sha256_file(path)
        os.replace(path, folder / file)
    return {"index": index, "name": name, "records": len(records), "files": files}


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, None when there is none yet; ECGDataError when it is damaged."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ECGDataError(path, f"corrupt manifest: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise ECGDataError(path, f"not a {FORMAT} manifest (format {manifest.get('format')!r})")
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = Path(folder) / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, Path(folder) / MANIFEST)


def shard_is_intact(folder: Path, entry: dict[str, Any]) -> bool:
    """All files of a manifest entry exist and match their checksums."""
    return all((Path(folder) / f).is_file() and sha256_file(Path(folder) / f) == digest
               for f, digest in entry["files"].items())


@dataclass(frozen=True)
class _Location:
    shard: int
    offset: int
    shape: tuple[int, int]


class ShardDataset:
    """Records of a prepared folder: `len`, random access `ds[i]`, iteration; checksums verified on open."""

    def __init__(self, folder: str | Path, verify: bool = True) -> None:
        self.folder = Path(folder)
        manifest = read_manifest(self.folder)
        if manifest is None:
            raise ECGDataError(self.folder, f"no {MANIFEST}: not a prepared dataset folder")
        self.manifest = manifest
        entries = sorted(manifest["shards"], key=lambda e: e["index"])
        for entry in entries:
            if verify:
                self._verify(entry)
        self._signals = [np.load(self.folder / f"{e['name']}.npy", mmap_mode="r") for e in entries]
        self._metas: list[dict[str, Any]] = []
        self._where: list[_Location] = []
        for position, entry in enumerate(entries):
            for meta in self._read_jsonl(self.folder / f"{entry['name']}.jsonl"):
                self._metas.append(meta)
                self._where.append(_Location(position, int(meta["offset"]), tuple(meta["shape"])))

    @property
    def fs(self) -> float | None:
        return self.manifest.get("fs")

    def __len__(self) -> int:
        return len(self._metas)

    def signal(self, index: int) -> np.ndarray:
        """Read-only [leads, samples] view into the memory-mapped shard (no copy)."""
        loc = self._where[index]
        size = loc.shape[0] * loc.shape[1]
        return self._signals[loc.shard][loc.offset:loc.offset + size].reshape(loc.shape)

    def meta(self, index: int) -> dict[str, Any]:
        return self._metas[index]

    def __getitem__(self, index: int) -> Record:
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        index %= len(self)
        return record_from_meta(self._metas[index], np.array(self.signal(index)))

    def __iter__(self) -> Iterator[Record]:
        return (self[i] for i in range(len(self)))

    def _verify(self, entry: dict[str, Any]) -> None:
        for file, digest in entry["files"].items():
            path = self.folder / file
            if not path.is_file():
                raise ECGDataError(path, "shard file missing")
            if sha256_file(path) != digest:
                raise ECGDataError(path, "checksum mismatch: shard file is damaged")

    @staticmethod
    def _read_jsonl(path: Path) -> list[dict[str, Any]]:
        try:
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except (OSError, json.JSONDecodeError) as exc:
            raise ECGDataError(path, f"cannot read shard metadata: {exc}") from None
