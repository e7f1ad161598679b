"""`heartfast data instruct SOURCE --out FILE`: HeartAgent instruction items with a per-type count table."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from heartfast.instruct.dataset import build_items, count_table
    from heartfast.instruct.items import write_jsonl, write_llava
    from heartfast.instruct.measured import MeasurementCache
    from heartfast.io.sources import list_records

    refs = list_records(args.source)
    records = (ref.load() for ref in refs)
    tasks = args.tasks.split(",") if args.tasks else None
    cache = None if args.no_measure else MeasurementCache(args.measure_cache or f"{args.out}.measurements.jsonl")
    if cache is not None and len(cache):
        print(f"reusing {len(cache)} cached measurements from {cache.path}")
    items = build_items(records, seed=args.seed, per_record=args.per_record, tasks=tasks,
                        measurements=None if args.no_measure else "auto", progress=True, total=len(refs),
                        cache=cache)
    if args.rewrite_model:
        from heartfast.instruct.rewrite import AnswerRewriter

        items = AnswerRewriter(args.rewrite_model)(items)
    items = list(items)
    n = write_llava(items, args.out) if args.format == "llava" else write_jsonl(items, args.out)
    print(count_table(items))
    print(f"wrote {n} items from {len(refs)} records to {args.out} ({args.format})")
    return 0


def register(tree) -> None:
    p = tree.add("data instruct", "build HeartAgent instruction items (QA, reports, grounded interpretations)", run)
    p.add_argument("source", help="database folder, WFDB record, or synthetic:N[:seed]")
    p.add_argument("--out", required=True, help="output file (.jsonl or LLaVA .json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-record", type=int, default=1, help="items per task type and record (distinct templates)")
    p.add_argument("--format", choices=("jsonl", "llava"), default="jsonl")
    p.add_argument("--tasks", default="", help="comma-separated task types (default: all)")
    p.add_argument("--no-measure", action="store_true", help="do not run the measurement module")
    p.add_argument("--measure-cache", default="",
                   help="JSONL of measurements taken so far, reused on a rerun (default: OUT.measurements.jsonl)")
    p.add_argument("--rewrite-model", default="", help="local HF chat model directory that rewrites free-text answers")
