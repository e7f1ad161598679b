"""`heartfast evaluate answers.jsonl --bench BENCH`: score answers, print a table, write JSON."""
from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from heartfast.evaluate.bench import read_bench
    from heartfast.evaluate.harness import evaluate, format_table, read_answers

    bert = None
    if args.bertscore_model:
        from heartfast.evaluate.text_metrics import BertScorer

        bert = BertScorer(args.bertscore_model)
    results = evaluate(read_bench(args.bench), read_answers(args.answers), bert)
    print(format_table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    return 0


def register(tree) -> None:
    p = tree.add("evaluate answers", "score model answers against a bench (accuracy, ROUGE-L, BLEU, grounding ...)",
                 run, default=True)
    p.add_argument("answers", help='JSONL file, one {"id": item id, "answer": text} per line')
    p.add_argument("--bench", required=True, help="bench folder from `heartfast bench build` (or its items.jsonl)")
    p.add_argument("--json", default="", help="write the metrics as JSON here")
    p.add_argument("--bertscore-model", default="", help="local encoder directory for BERTScore-F1")
