"""`heartfast data inspect|prepare|download`: look at ECG records, turn them into shards, fetch databases."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from heartfast.io.record import LEADS_12, ECGDataError, Label, Record


def inspect(args: argparse.Namespace) -> int:
    rows = [("id", "database", "fs", "leads", "duration", "labels", "report")]
    try:
        total, records = _records(args.path, args.limit, args.ptbxl_fs)
        for record in records:
            rows.append(_row(record) if isinstance(record, Record) else (*record[:2], "", "", "", "", record[2]))
    except ECGDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"{len(rows) - 1} of {total} records shown")
    return 0


def _records(path: str, limit: int, ptbxl_fs: int):
    """(total, first `limit` records); a record that cannot be read becomes (id, database, 'ERROR: ...')."""
    from heartfast.data.shards import MANIFEST, ShardDataset

    if (Path(path) / MANIFEST).is_file():
        dataset = ShardDataset(path)
        return len(dataset), [dataset[i] for i in range(min(limit, len(dataset)))]
    from heartfast.io.sources import list_records

    refs = list_records(path, ptbxl_fs)
    out = []
    for ref in refs[:limit]:
        try:
            out.append(ref.load())
        except ECGDataError as exc:
            out.append((ref.id, ref.database, f"ERROR: {exc}"))
    return len(refs), out


def _row(record: Record) -> tuple[str, ...]:
    leads = "12 (standard)" if record.leads == LEADS_12 else ",".join(record.leads)
    report = " ".join(record.report.split())
    return (record.id, record.database, f"{record.fs:g}", leads, f"{record.duration_s:.1f}s",
            _labels(record.labels), report[:40] + ("…" if len(report) > 40 else ""))


def _labels(labels: list[Label], limit: int = 4) -> str:
    def one(label: Label) -> str:
        name = label.code if label.system == "scp" else (label.description or label.code)
        return f"{name}({label.likelihood:g})" if label.likelihood else name

    text = ", ".join(one(label) for label in labels[:limit])
    return text + (f" +{len(labels) - limit}" if len(labels) > limit else "")


def prepare(args: argparse.Namespace) -> int:
    from heartfast.data.prepare import prepare as prepare_shards

    try:
        result = prepare_shards(args.source, args.out, fs=args.fs, shard_size=args.shard_size,
                                ptbxl_fs=args.ptbxl_fs, progress=not args.quiet)
    except ECGDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.records} records in {result.out} ({result.shards_written} shards written, "
          f"{result.shards_skipped} already done), {len(result.bad)} bad records skipped")
    for bad in result.bad:
        print(f"  bad: {bad['path']}: {bad['problem']}")
    return 0


def download(args: argparse.Namespace) -> int:
    from heartfast.io.download import DownloadError, download as download_database

    try:
        folder = download_database(args.database, args.to)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.database} downloaded to {folder}")
    return 0


def register(tree) -> None:
    from heartfast.io.download import PHYSIONET_DATABASES
    from heartfast.io.ptbxl import PTBXL_RATES

    p = tree.add("data inspect", "table of the records in a folder, record or prepared dataset", inspect)
    p.add_argument("path", help="WFDB folder (searched recursively), record path, or prepared shard folder")
    p.add_argument("--limit", type=int, default=20, help="records to show (default 20)")
    p.add_argument("--ptbxl-fs", type=int, choices=PTBXL_RATES, default=100, help="PTB-XL rate to read")

    p = tree.add("data prepare", "read, resample and write records as checksummed dataset shards (resumable)",
                 prepare)
    p.add_argument("source", help="WFDB folder/record, or synthetic:N[:SEED]")
    p.add_argument("--out", required=True, help="output folder (re-run with the same folder to resume)")
    p.add_argument("--fs", type=float, default=500.0, help="target sampling rate in Hz (default 500)")
    p.add_argument("--shard-size", type=int, default=512, help="records per shard (default 512)")
    p.add_argument("--ptbxl-fs", type=int, choices=PTBXL_RATES, default=100, help="PTB-XL rate to read")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = tree.add("data download", "download a PhysioNet database with wfdb (needs internet)", download)
    p.add_argument("database", choices=sorted(PHYSIONET_DATABASES))
    p.add_argument("--to", required=True, help="destination folder")
