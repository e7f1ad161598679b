"""`heartfast info`: versions and the kernel backends available on this machine."""
from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    import torch

    from heartfast import __version__
    from heartfast.ops.backend import available_backends

    print(f"heartfast {__version__}  torch {torch.__version__}")
    print(f"cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}")
    print("backends: " + ", ".join(available_backends()))
    return 0


def register(tree) -> None:
    tree.add("info", "print versions and available kernel backends", run)
