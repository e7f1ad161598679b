"""`heartfast model presets|build|parity`: list the model presets, assemble one from local checkpoints,
and check a decoder checkpoint's logits against transformers."""
from __future__ import annotations

import argparse
import sys


def presets(args: argparse.Namespace) -> int:
    from heartfast.model.presets import PRESETS, get_preset, parameter_counts

    print(f"{'preset':<16}{'decoder':>14}{'vision':>14}{'signal enc.':>14}{'projectors':>14}{'total':>16}")
    for name in PRESETS:
        if args.signal_mode == "discrete" and get_preset(name).signal_encoder != "beat":
            continue  # GEM's time-series stream has no discrete codes
        c = parameter_counts(name, signal_mode=args.signal_mode)
        print(f"{name:<16}{c['llm']:>14,}{c['vision']:>14,}{c['signal_encoder']:>14,}{c['projector']:>14,}"
              f"{c['total']:>16,}")
    return 0


def build(args: argparse.Namespace) -> int:
    import torch

    from heartfast.model.presets import build_model

    try:
        model, tokenizer = build_model(args.preset, llm_dir=args.llm, vision_dir=args.vision,
                                       signal_dir=args.signal, signal_mode=args.signal_mode,
                                       dtype=getattr(torch, args.dtype))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = model.save_pretrained(args.out, tokenizer)
    count = sum(p.numel() for p in model.parameters())
    print(f"{args.preset}: {count:,} parameters -> {out}")
    return 0


def parity(args: argparse.Namespace) -> int:
    import torch
    import transformers

    from heartfast.model.llm import DecoderLM

    torch.manual_seed(0)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(args.checkpoint, local_files_only=True,
                                                               dtype=torch.float32).eval()
    ours = DecoderLM.from_pretrained(args.checkpoint).eval()
    ids = torch.randint(0, ours.config.vocab_size, (args.batch, args.tokens))
    with torch.no_grad():
        diff = (ours(input_ids=ids) - theirs(input_ids=ids).logits).abs().max().item()
    print(f"{ours.config.arch}: max |logit difference| = {diff:.3e} over {args.batch} x {args.tokens} tokens")
    return 0 if diff < args.tolerance else 1


def register(tree) -> None:
    p = tree.add("model presets", "list the model presets with their parameter counts", presets)
    p.add_argument("--signal-mode", default="continuous", choices=["continuous", "discrete"])
    p = tree.add("model build", "assemble a HeartcareGPT / GEM model from local checkpoint directories", build)
    p.add_argument("preset", help="tiny | heartcare-3.8b | heartcare-7b | gem-7b")
    p.add_argument("--llm", help="decoder checkpoint directory (config.json, safetensors, tokenizer)")
    p.add_argument("--vision", help="SigLIP / CLIP checkpoint directory")
    p.add_argument("--signal", help="Beat tokenizer (from `train beat`) or time-series encoder directory")
    p.add_argument("--signal-mode", default="continuous", choices=["continuous", "discrete"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--out", required=True, help="output directory (config.json, model.safetensors, tokenizer)")
    p = tree.add("model parity", "compare a decoder checkpoint's logits with transformers' (fp32, CPU)", parity)
    p.add_argument("checkpoint", help="Llama / Qwen2 / Phi-3 checkpoint directory")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--tolerance", type=float, default=1e-4)
