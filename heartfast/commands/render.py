"""`heartfast render RECORD_OR_DIR --layout 6x2 --size 384 -o OUT`: ECG images (PNG) of records.

Records are read with heartfast.io (any folder, one WFDB record, or `synthetic:N`), brought to one sampling
rate (`--fs`, polyphase resampling; 0 keeps each record's own), cut to the seconds the layout shows from
`--start` (shorter records leave the rest blank) and rendered in batches. Leads a record lacks are left
blank. Existing PNGs are kept, so an interrupted run resumes (`--overwrite` redraws them).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def parse_size(text: str) -> int | tuple[int, int]:
    """'384' -> 384 (square); '2200x1700' -> (2200, 1700) (width x height)."""
    match = re.fullmatch(r"(\d+)(?:[xX](\d+))?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"size must be N or WIDTHxHEIGHT, not {text!r}")
    return int(match[1]) if match[2] is None else (int(match[1]), int(match[2]))


def record_window(record, fs: float, start_s: float, duration_s: float):
    """[12, round(duration_s * fs) + 1] float32 mV in LEADS_12 order at `fs`; NaN where there is no data."""
    import numpy as np
    import torch

    from heartfast.io.record import LEADS_12

    # cut the window (with 0.1 s to spare for the resampling filter) before converting anything
    lo = max(0, int(np.floor((start_s - 0.1) * record.fs)))
    hi = min(record.n_samples, int(np.ceil((start_s + duration_s + 0.1) * record.fs)) + 1)
    signal = torch.full((len(LEADS_12), max(0, hi - lo)), float("nan"))
    for i, name in enumerate(LEADS_12):
        if name in record.leads:
            signal[i] = torch.from_numpy(np.asarray(record.signal[record.leads.index(name), lo:hi], dtype=np.float32))
    if fs != record.fs and signal.shape[1] > 0:
        from heartfast.signal.filters import resample

        signal = resample(signal, record.fs, fs)
    first, n = int(round((start_s - lo / record.fs) * fs)), int(round(duration_s * fs)) + 1
    window = torch.full((len(LEADS_12), n), float("nan"))
    piece = signal[:, first:first + n]
    window[:, :piece.shape[1]] = piece
    return window


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image
    from tqdm import tqdm

    from heartfast.io.record import ECGDataError
    from heartfast.io.sources import list_records
    from heartfast.render.augment import augment_paper
    from heartfast.render.renderer import ECGRenderer

    renderer = ECGRenderer(args.layout, args.size, args.fit, args.seconds, device=args.device)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = list_records(args.source, ptbxl_fs=args.ptbxl_fs)
    target = lambda ref: out_dir / (re.sub(r"[^\w.-]", "_", f"{ref.database}_{ref.id}") + ".png")
    todo = [ref for ref in refs if args.overwrite or not target(ref).exists()]
    print(f"{len(refs)} records, {len(refs) - len(todo)} already rendered in {out_dir}", file=sys.stderr)
    failures = 0
    buffer = renderer.buffer(args.batch)   # full batches are drawn into one reused buffer (PNGs written first)
    position = {id(ref): i for i, ref in enumerate(refs)}   # per-record augmentation seeds survive resumes
    batch: list[tuple[Path, torch.Tensor, float, int]] = []

    def flush() -> None:
        if not batch:
            return
        signals = torch.stack([signal for _, signal, _, _ in batch])
        images = renderer(signals, batch[0][2], out=buffer if len(batch) == args.batch else None)
        if args.augment_seed is not None:
            images = augment_paper(images, seed=[args.augment_seed * 1_000_003 + i for *_, i in batch])
        for (path, *_), image in zip(batch, images.cpu()):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, compress_level=args.compress)
        batch.clear()

    for ref in tqdm(todo, unit="record", disable=not todo):
        try:
            record = ref.load()
        except ECGDataError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            failures += 1
            continue
        fs = float(args.fs) if args.fs > 0 else float(record.fs)
        if batch and batch[0][2] != fs:
            flush()
        window = record_window(record, fs, args.start, renderer.layout.duration_s)
        batch.append((target(ref), window, fs, position[id(ref)]))
        if len(batch) == args.batch:
            flush()
    flush()
    if failures:
        print(f"{failures} record(s) could not be read (see above)", file=sys.stderr)
    return 1 if failures else 0


def register(tree) -> None:
    from heartfast.render.layout import FITS, LAYOUTS

    parser = tree.add("render", "draw 12-lead ECG images (PNG) of records", run)
    parser.add_argument("source", help="a folder of records, one WFDB record path, or synthetic:N[:seed]")
    parser.add_argument("-o", "--output", required=True, help="folder for the PNGs")
    parser.add_argument("--layout", choices=LAYOUTS, default="6x2")
    parser.add_argument("--size", type=parse_size, default=384, help="N (square) or WIDTHxHEIGHT, e.g. 2200x1700")
    parser.add_argument("--fit", choices=FITS, default="stretch", help="how a page fills a differently shaped image")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per lead on 6x2 (2-5, default 2.5)")
    parser.add_argument("--start", type=float, default=0.0, help="first second of the record to show")
    parser.add_argument("--fs", type=float, default=500.0, help="render at this rate (0: each record's own)")
    parser.add_argument("--ptbxl-fs", type=int, choices=(100, 500), default=500, help="PTB-XL files to read")
    parser.add_argument("--batch", type=int, default=32, help="records rendered together")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--augment-seed", type=int, default=None, help="add paper-like noise/rotation/blur")
    parser.add_argument("--compress", type=int, default=3, help="PNG compression level 0-9")
    parser.add_argument("--overwrite", action="store_true", help="redraw PNGs that already exist")
