"""`heartfast evaluate delineation DB`: heartfast's delineator vs NeuroKit2 against expert annotations."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from heartfast.evaluate.delineation import evaluate, format_tables, to_json
    from heartfast.io.record import ECGDataError
    from heartfast.io.sources import list_records

    torch.set_num_threads(args.threads)
    refs = list_records(args.db)
    if args.half:
        refs = [ref for i, ref in enumerate(refs) if _number(ref.id, i) % 2 == (args.half == "odd")]
    if args.limit:
        refs = refs[: args.limit]
    records, skipped = [], []
    for ref in tqdm(refs, desc="reading", unit="record", leave=False):
        try:
            record = ref.load()
            if record.annotations is None or not record.annotations.waves:
                raise ECGDataError(record.path or ref.path, "record has no expert annotations to score against")
        except ECGDataError as error:  # score the rest; say which records were left out and why
            skipped.append(str(error))
            continue
        records.append(record)
    for reason in skipped:
        print(f"skipped: {reason}")
    if not records:
        raise ECGDataError(args.db, "no readable annotated records to score")
    methods = ["heartfast"]
    if not args.no_neurokit:
        methods += [f"neurokit-{m.strip()}" for m in args.neurokit.split(",") if m.strip()]
    if args.expert_lead:
        methods.append(f"expert-{args.expert_lead}")
    scores = evaluate(records, lead=args.lead, methods=methods, reference=args.reference,
                      progress=lambda name: print(f"running {name} on {len(records)} records", flush=True))
    half = f" ({args.half} record numbers)" if args.half else ""
    title = (f"delineation on {args.db}{half}: {len(records)} records ({len(skipped)} skipped), lead {args.lead}, "
             f"match within 150 ms; intervals against the {args.reference} expert reference; CPU time")
    print(format_tables(scores, title))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(scores, db=str(args.db), lead=args.lead, records=len(records),
                                                      skipped=skipped, reference=args.reference, half=args.half),
                                              indent=2, default=float))
        print(f"wrote {args.json}")
    return 0


def _number(name: str, position: int) -> int:
    """The record's number (LUDB '17' -> 17, QTDB 'sel116' -> 116); its position where it has none."""
    digits = re.sub(r"\D", "", name)
    return int(digits) if digits else position


def register(tree) -> None:
    parser = tree.add("evaluate delineation",
                      "score heartfast's delineation (and NeuroKit2's) against expert annotations "
                      "(LUDB/QTDB folder or synthetic:N)", run)
    parser.add_argument("db", help="folder of annotated records (LUDB, QTDB) or synthetic:N[:seed]")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N records")
    parser.add_argument("--lead", default="II", help="lead whose annotations are scored (default II)")
    parser.add_argument("--no-neurokit", action="store_true", help="skip NeuroKit2")
    parser.add_argument("--neurokit", default="dwt,prominence",
                        help="NeuroKit2 ecg_delineate methods to compare (comma separated; default dwt,prominence)")
    parser.add_argument("--reference", choices=("lead", "global"), default="lead",
                        help="expert intervals from the scored lead's own annotations (default) or, for per-lead "
                             "annotations (LUDB), earliest onset / latest offset over all leads")
    parser.add_argument("--half", choices=("odd", "even"),
                        help="score only records with odd/even numbers (a held-out check: tune on one half)")
    parser.add_argument("--expert-lead", metavar="LEAD",
                        help="also score the experts' annotations of LEAD (e.g. aVF) against those of --lead, "
                             "the reference's own lead-to-lead agreement (per-lead annotated DBs such as LUDB)")
    parser.add_argument("--json", help="also write the scores as JSON to this file")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for heartfast (default 1: NeuroKit2 runs on one core too)")
