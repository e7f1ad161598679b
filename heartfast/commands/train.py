"""`heartfast train align|sft`: HeartcareGPT stages 2 and 3 (see heartfast.train.stages and docs/training.md).

Runs under torchrun for DDP: `torchrun --nproc-per-node N -m heartfast train sft ...`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from heartfast.io.record import ECGDataError


def _flags(args: argparse.Namespace) -> list[str]:
    """Explicit flags as `--set` overrides (applied last)."""
    pairs = {"data.source": args.data, "data.items": args.items, "train.out": args.out and str(args.out),
             "model.path": args.model, "train.steps": args.steps, "train.batch_size": args.batch_size,
             "train.lr": args.lr, "train.seed": args.seed, "train.checkpoint_every": args.checkpoint_every}
    out = []
    for key, value in pairs.items():
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    if args.quiet:
        out.append("train.progress=false")
    if args.no_eval:
        out.append("evaluate=false")
    return out


def run(args: argparse.Namespace) -> int:
    from heartfast.train.config import load_config
    from heartfast.train.distributed import shutdown_distributed
    from heartfast.train.stages import run_stage

    try:
        config = load_config(args.stage, args.config, [*args.set, *_flags(args)], preset=args.preset)
        summary = run_stage(config, progress=not args.quiet)
    except (ECGDataError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shutdown_distributed()   # all processes got here: leave the group together
    if int(os.environ.get("RANK", "0")) != 0:   # under torchrun the main process reports
        return 0
    if "eval" in summary:
        for task, row in summary["eval"].items():
            print(f"{task:<20} accuracy {row['accuracy']:.3f} ({row['items']} held-out items)")
    losses = summary["losses"]
    if losses:
        print(f"{summary['stage']}: {summary['steps']} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
              f"model saved to {config.train.out}/model")
    return 0


def register(tree) -> None:
    for stage, help_text in (("align", "stage 2: warm up the DSPA projectors (LLM and encoders frozen)"),
                             ("sft", "stage 3: instruction tuning (LoRA or full) with the projectors")):
        p = tree.add(f"train {stage}", help_text, run)
        p.set_defaults(stage=stage)
        p.add_argument("--data", help="records: folder, WFDB record or synthetic:N[:seed]")
        p.add_argument("--items", help="instruction items JSONL (default: built from the records)")
        p.add_argument("--out", help="run folder: latest.pt, metrics.jsonl, loss.png, model/, summary.json")
        p.add_argument("--config", help="TOML file with [model] [data] [lora] [train] sections")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting, e.g. train.lr=1e-4 or lora.r=16 (repeatable)")
        p.add_argument("--model", help="HeartcareGPT directory to start from (e.g. the align run's model/)")
        p.add_argument("--preset", help="model preset to build when --model is not given (and its recipe)")
        p.add_argument("--steps", type=int)
        p.add_argument("--batch-size", type=int, help="global samples per optimizer step")
        p.add_argument("--lr", type=float)
        p.add_argument("--seed", type=int)
        p.add_argument("--checkpoint-every", type=int)
        p.add_argument("--no-eval", action="store_true", help="skip the held-out closed-QA accuracy")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
