"""`heartfast demo`: the main job end to end (data → Beat → HeartcareGPT → engine → evaluation)."""
from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from heartfast.demo import DemoConfig, run_demo
    from heartfast.evaluate.harness import format_table

    cfg = DemoConfig(out=Path(args.out), data=args.data or "", records=args.records,
                     bench_records=args.bench_records, beat_steps=args.beat_steps, align_steps=args.align_steps,
                     sft_steps=args.sft_steps, warmup_steps=args.warmup_steps, max_tokens=args.max_tokens,
                     progress=not args.quiet)
    result = run_demo(cfg)
    print("\n== results (held-out bench)")
    print(format_table(result.evaluation))
    print(f"\nthroughput: {result.throughput}")
    print("time per stage: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
          + f"; total {sum(result.seconds.values()):.0f} s")
    print("plots: " + ", ".join(str(p) for p in result.plots))
    print(f"everything else (models, metrics, answers.jsonl, results.json): {cfg.out}")
    return 0


def register(tree) -> None:
    p = tree.add("demo", "run the whole pipeline on synthetic ECGs (or --data DIR) and print the results", run)
    p.add_argument("--data", help="a database folder (e.g. ../shared/data/ptb-xl) instead of synthetic ECGs")
    p.add_argument("--out", default="runs/demo", help="working folder (rerun to resume)")
    p.add_argument("--records", type=int, default=600, help="synthetic training records")
    p.add_argument("--bench-records", type=int, default=24, help="synthetic bench records")
    p.add_argument("--beat-steps", type=int, default=150)
    p.add_argument("--align-steps", type=int, default=100)
    p.add_argument("--sft-steps", type=int, default=1000)
    p.add_argument("--warmup-steps", type=int, help="signal-encoder warm-up steps before sft (default: the recipe's)")
    p.add_argument("--max-tokens", type=int, default=800,
                   help="answer length limit when serving the bench (its longest answers run to ~750 tokens)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
