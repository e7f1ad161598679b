"""`heartfast infer --model CKPT (--records SOURCE | --bench BENCH) --out answers.jsonl`: batch inference."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_QUESTION = "Write the ECG report for this recording."


def run(args: argparse.Namespace) -> int:
    import torch

    from heartfast.engine.batch import answer_items, record_items
    from heartfast.engine.engine import Engine
    from heartfast.engine.sampling import SamplingParams
    from heartfast.io.record import ECGDataError
    from heartfast.io.sources import list_records
    from heartfast.model.heartcare import HeartcareGPT
    from heartfast.model.vocab import load_text_tokenizer

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "fp32": torch.float32,
             "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    try:
        model = HeartcareGPT.from_pretrained(args.model, dtype=dtype, device=device)
        tokenizer = load_text_tokenizer(args.model)
        if args.bench:
            from heartfast.evaluate.bench import MANIFEST_FILE, read_bench

            items = [item for _, item in read_bench(args.bench)]
            manifest = Path(args.bench) / MANIFEST_FILE
            source = args.data or (json.loads(manifest.read_text())["source"] if manifest.is_file() else "")
            if not source:
                raise ValueError(f"{args.bench}: no manifest naming its source; pass --data SOURCE")
        else:
            source = args.records
            items = record_items([ref.id for ref in list_records(source)], args.question)
    except (ECGDataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    items = items[: args.limit] if args.limit else items
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed)
    engine = Engine(model, tokenizer, max_seqs=args.batch, prefix_cache=not args.no_prefix_cache)
    report = answer_items(engine, items, source, args.out, params, images=not args.no_images,
                          progress=not args.quiet)
    print(f"answered {report.answered} items into {args.out} ({report.skipped_done} already there, "
          f"{report.failed_items} skipped for bad records)")
    for record_id, problem in sorted(report.bad_records.items()):
        print(f"  bad record {record_id}: {problem}")
    print(engine.stats.summary())
    return 0


def register(tree) -> None:
    p = tree.add("infer", "answer questions about many ECGs with the batch engine (resumable)", run)
    p.add_argument("--model", required=True, help="HeartcareGPT directory (save_pretrained, with its tokenizer)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--records", help="ECG source (folder, record or synthetic:N[:SEED]): one question each")
    what.add_argument("--bench", help="bench folder from `heartfast bench build`")
    p.add_argument("--data", default="", help="source of the bench's records (default: the one in its manifest)")
    p.add_argument("--out", required=True, help="answers JSONL (appended to; finished ids are skipped)")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="question asked of every record with --records")
    p.add_argument("--max-tokens", type=int, default=40)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the papers' evaluation)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.1)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--batch", type=int, default=64, help="requests in flight (and per preparation batch)")
    p.add_argument("--limit", type=int, default=0, help="answer only the first N items")
    p.add_argument("--no-images", action="store_true", help="show every ECG as a signal")
    p.add_argument("--no-prefix-cache", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--quiet", action="store_true", help="no progress bar")
