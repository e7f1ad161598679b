"""`heartfast bench build SOURCE --out BENCH`: Heartcare-Bench-style sets (S, I, C) and grounding sets."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from heartfast.evaluate.bench import bench_items, write_bench
    from heartfast.instruct.measured import MeasurementCache
    from heartfast.io.sources import list_records

    refs = list_records(args.source)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    cache = None if args.no_measure else MeasurementCache(Path(args.out) / "measurements.jsonl")
    pairs = bench_items((ref.load() for ref in refs), seed=args.seed, split=args.split,
                        measurements=None if args.no_measure else "auto", progress=True, total=len(refs),
                        cache=cache)
    manifest = write_bench(pairs, args.out, str(args.source), args.seed, args.split)
    for key, n in manifest["counts"].items():
        print(f"{key:<40} {n:>7}")
    print(f"wrote {manifest['items']} items over {manifest['records']} records to {args.out}")
    return 0


def register(tree) -> None:
    p = tree.add("bench build", "build Heartcare-Bench-style evaluation sets from a database's test split", run)
    p.add_argument("source", help="database folder, WFDB record, or synthetic:N[:seed]")
    p.add_argument("--out", required=True, help="output folder (items.jsonl + manifest.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=("test", "val", "all"), default="test",
                   help="held-out split of real databases (synthetic sources always use every record)")
    p.add_argument("--no-measure", action="store_true",
                   help="do not run the measurement module (measurements taken are kept in BENCH/measurements.jsonl "
                        "and reused when the build is run again)")
