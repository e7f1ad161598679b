"""`heartfast train beat` (train + evaluate the Beat tokenizer) and `heartfast tokenize` (codes for a dataset)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from heartfast.io.record import ECGDataError


def train(args: argparse.Namespace) -> int:
    from heartfast.train.beat import quality_table, run_beat_stage
    from heartfast.train.distributed import shutdown_distributed
    from heartfast.train.loop import TrainConfig

    lr = args.lr if args.lr is not None else (3e-3 if args.preset == "tiny" else 1e-3)
    config = TrainConfig(steps=args.steps, lr=lr, batch_size=args.batch_size, clip=1.0,
                         weight_decay=0.01, warmup_steps=min(100, args.steps // 10), schedule="cosine",
                         checkpoint_every=args.checkpoint_every, seed=args.seed, out=str(args.out),
                         progress=not args.quiet)
    try:
        metrics = run_beat_stage(args.data, args.out, args.preset, config, progress=not args.quiet)
    except ECGDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shutdown_distributed()   # under torchrun: leave the group together; the main process reports
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"tokenizer saved to {Path(args.out) / 'model'}; held-out quality ({metrics['windows']} windows):")
    print(quality_table(metrics))
    return 0


def tokenize(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from heartfast.model.beat import BeatTokenizer
    from heartfast.train.beat import load_records

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = BeatTokenizer.from_pretrained(args.model, device=device)
    try:
        records = load_records(args.data, progress=not args.quiet)
    except ECGDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ids, codes, windows = [], [], []
    for record in tqdm(records, desc="tokenize", disable=args.quiet):
        record_codes = model.encode(record.to_12_leads(), record.fs)[0]   # [W, queries, levels]
        ids.append(record.id)
        codes.append(record_codes.cpu().numpy().astype(np.int16))
        windows.append(record_codes.shape[0])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, ids=np.array(ids), codes=np.concatenate(codes), windows=np.array(windows))
    print(f"{len(ids)} records, {sum(windows)} windows -> {out} (codes [windows, queries, levels]; "
          f"record i owns windows[:i].sum() ... + windows[i])")
    return 0


def register(tree) -> None:
    p = tree.add("train beat", "train the Beat ECG tokenizer and report its held-out quality", train)
    p.add_argument("--data", required=True, help="source folder (PTB-XL, WFDB, prepared shards) or synthetic:N")
    p.add_argument("--out", required=True, type=Path, help="run folder: checkpoints, model/, eval.json")
    p.add_argument("--preset", default="beat-4s", choices=["beat-4s", "beat-2s", "tiny"])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 3e-3 for tiny, 1e-3 otherwise: short runs; the paper's 1e-4 "
                        "is for ~34k steps)")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p = tree.add("tokenize", "write Beat codes for every record of a source or prepared dataset", tokenize)
    p.add_argument("--model", required=True, type=Path, help="folder written by save_pretrained")
    p.add_argument("--data", required=True, help="source folder, prepared shards folder or synthetic:N")
    p.add_argument("--out", required=True, type=Path, help=".npz file: ids, codes, windows per record")
    p.add_argument("--quiet", action="store_true")
