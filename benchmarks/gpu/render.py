"""GPU checks and timings for the batched ECG renderer (heartfast.render), pure torch on CUDA.

    python3 benchmarks/gpu_suite.py --only render [--quick]

Checks: the CUDA images equal the CPU images (same code path; uint8 results may differ by one grey level
where float rounding lands differently) for every layout at 384 px, 224 px and 2200x1700, on real-looking
random-walk signals with an odd length (4999 samples) and at 360 Hz.
Timings: images/s at 384 px (the SigLIP input size) for 12x1, 6x2 and 3x4 with batches of 256 (goal:
>= 2,000 images/s), and 12x1 at 2200x1700 (GEM's page) with batches of 32. Bytes: the images written
(4 B per pixel, RGBA words) plus the samples read; the roofline is that traffic at copy bandwidth.
"""
from __future__ import annotations

import torch

from heartfast.render.layout import LAYOUTS
from heartfast.render.renderer import ECGRenderer


def _signals(batch: int, n_samples: int, device: str, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    walk = (torch.randn(batch, 12, n_samples, generator=gen) * 0.02).cumsum(-1)
    return (walk - walk.mean(-1, keepdim=True)).to(device)


def run(suite, device: str = "cuda") -> None:
    for layout in LAYOUTS:
        for size, fs, n in ((384, 500.0, 4999), (224, 360.0, 3600), ((2200, 1700), 500.0, 5000)):
            signals = _signals(4, n, "cpu", seed=1)
            cpu = ECGRenderer(layout, size)(signals, fs).contiguous()
            gpu = ECGRenderer(layout, size, device=device)(signals.to(device), fs).contiguous().cpu()
            worst = (cpu.int() - gpu.int()).abs().max().item()
            suite.check(f"render {layout} {size} fs={fs:g} cuda vs cpu (max grey diff {worst})",
                        gpu.float(), cpu.float(), 1e-3)
    cases = [(layout, 384, 256) for layout in LAYOUTS] + [("12x1", (2200, 1700), 32)]
    if suite.quick:
        cases = cases[1:2]
    for layout, size, batch in cases:
        renderer = ECGRenderer(layout, size, device=device)
        signals = _signals(batch, 5000, device)
        renderer(signals, 500.0)  # geometry caches
        height, width = renderer.size
        nbytes = batch * (height * width * 4 * 2 + 12 * 5000 * 4)
        ms = suite.time(f"render {layout} {size}px batch {batch}", "heartfast torch (cuda)",
                        lambda: renderer(signals, 500.0), bytes=nbytes)
        if ms:
            rate = batch / ms * 1000
            print(f"    {rate:,.0f} images/s ({layout}, {size}, batch {batch})", flush=True)
            suite.timings[-1].extra["images_per_s"] = round(rate, 1)
