"""DSPA dual-stream projection on the GPU: correctness (fp32/fp16/bf16, odd sizes, forward and backward) and
timing at the issue's shape against eager PyTorch and torch.compile, forward and forward+backward.

Shape: 64 ECGs; signal 64·20 Beat latents × 128 → H (Linear, GELU, LayerNorm); image 64·12 lead-crop
vectors × 1152 → 2H → 2H, two tokens each; written into bf16 embeddings [64, 256, H]; H = 3072 and 3584.
    python3 benchmarks/gpu_suite.py --only projection
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from heartfast.kernels.autotune import first_config_only
from heartfast.ops.projection import Linear, Norm, Stream, dual_projection, dual_projection_reference

ECGS, LATENTS, CROPS, SEQ = 64, 20, 12, 256


def make_case(hidden: int, dtype: torch.dtype, device: str, ecgs: int, latents: int, crops: int, seq: int,
              signal_dim: int = 128, image_dim: int = 1152) -> dict:
    """Inputs, weights (requiring grad) and placeholder rows laid out like real prompts."""
    def w(*shape: int, scale: float) -> torch.Tensor:
        return (scale * torch.randn(*shape, device=device)).to(dtype).requires_grad_()

    per_sample_img = torch.arange(2 * crops) + 1
    per_sample_sig = torch.arange(latents) + 2 * crops + 3
    base = (torch.arange(ecgs) * seq)[:, None]
    return {
        "embeds": (0.02 * torch.randn(ecgs, seq, hidden, device=device)).to(dtype),
        "x_sig": torch.randn(ecgs * latents, signal_dim, device=device).to(dtype),
        "x_img": torch.randn(ecgs * crops, image_dim, device=device).to(dtype),
        "rows_sig": (base + per_sample_sig).reshape(-1).to(device),
        "rows_img": (base + per_sample_img).reshape(-1).to(device),
        "sig_w": w(hidden, signal_dim, scale=signal_dim ** -0.5), "sig_b": w(hidden, scale=0.02),
        "ln_w": (1 + 0.1 * torch.randn(hidden, device=device)).to(dtype).requires_grad_(),
        "ln_b": w(hidden, scale=0.02),
        "img_w1": w(2 * hidden, image_dim, scale=image_dim ** -0.5), "img_b1": w(2 * hidden, scale=0.02),
        "img_w2": w(2 * hidden, 2 * hidden, scale=(2 * hidden) ** -0.5), "img_b2": w(2 * hidden, scale=0.02),
    }


def streams(c: dict) -> list[Stream]:
    return [Stream(c["x_sig"], c["rows_sig"], [Linear(c["sig_w"], c["sig_b"], gelu=True), Norm(c["ln_w"], c["ln_b"])]),
            Stream(c["x_img"], c["rows_img"], [Linear(c["img_w1"], c["img_b1"], gelu=True),
                                               Linear(c["img_w2"], c["img_b2"])], tokens=2)]


def params(c: dict) -> list[torch.Tensor]:
    return [c[k] for k in ("sig_w", "sig_b", "ln_w", "ln_b", "img_w1", "img_b1", "img_w2", "img_b2")]


def eager(embeds, x_sig, rows_sig, x_img, rows_img, sig_w, sig_b, ln_w, ln_b, img_w1, img_b1, img_w2, img_b2):
    """What a PyTorch implementation writes: two MLPs, reshape to tokens, concatenate, scatter into embeds."""
    hidden = embeds.shape[-1]
    sig = F.layer_norm(F.gelu(F.linear(x_sig, sig_w, sig_b)), (hidden,), ln_w, ln_b)
    img = F.linear(F.gelu(F.linear(x_img, img_w1, img_b1)), img_w2, img_b2).reshape(-1, hidden)
    flat = embeds.reshape(-1, hidden).index_copy(0, torch.cat([rows_sig, rows_img]), torch.cat([sig, img]))
    return flat.view(embeds.shape)


def _eager_args(c: dict) -> list:
    return [c["embeds"], c["x_sig"], c["rows_sig"], c["x_img"], c["rows_img"], *params(c)]


def flops(c: dict) -> float:
    ns, ks = c["x_sig"].shape
    ni, ki = c["x_img"].shape
    h = c["embeds"].shape[-1]
    return 2.0 * (ns * ks * h + ni * ki * 2 * h + ni * (2 * h) ** 2)


DTYPES = ((torch.float32, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 1e-2))


def check(suite, device: str = "cuda", dtypes: tuple = DTYPES) -> None:
    """Odd sizes in every dtype, forward (the written rows) and backward, against the fp32 torch reference."""
    for dtype, tol in dtypes:
        c = make_case(200, dtype, device, ecgs=3, latents=7, crops=5, seq=61, signal_dim=37, image_dim=91)
        c32 = {k: (v.detach().float().requires_grad_(v.requires_grad) if v.is_floating_point() else v)
               for k, v in c.items()}
        grad = torch.randn_like(c["embeds"])
        ref = dual_projection_reference(c32["embeds"], streams(c32))
        ref_grads = torch.autograd.grad(ref, params(c32), grad.float())
        out = dual_projection(c["embeds"].clone(), streams(c), backend="triton")
        grads = torch.autograd.grad(out, params(c), grad)
        name = str(dtype).replace("torch.", "")
        rows = torch.cat([c["rows_sig"], c["rows_img"]])
        width = out.shape[-1]
        suite.check(f"dual_projection fwd {name}", out.reshape(-1, width)[rows], ref.reshape(-1, width)[rows], tol)
        for label, g, r in zip(("sig_w", "sig_b", "ln_w", "ln_b", "img_w1", "img_b1", "img_w2", "img_b2"),
                               grads, ref_grads):
            suite.check(f"dual_projection bwd {name} d{label}", g, r, tol * (1 if dtype == torch.float32 else 2))


def run(suite) -> None:
    with first_config_only():
        check(suite, dtypes=DTYPES[2:] if suite.quick else DTYPES)   # --quick: bf16 (fp32 compiles slowly)
    compiled = torch.compile(eager)
    for hidden in (3072, 3584):
        c = make_case(hidden, torch.bfloat16, "cuda", ECGS, LATENTS, CROPS, SEQ)
        fl = flops(c)
        case = f"dual_projection fwd H={hidden} bf16"
        with torch.no_grad():
            buf = c["embeds"].clone()
            suite.check(f"{case} vs eager", dual_projection(buf, streams(c), backend="triton"),
                        eager(*_eager_args(c)), 1e-2)
            suite.time(case, "heartfast triton", lambda: dual_projection(buf, streams(c), backend="triton"), flops=fl)
            suite.time(case, "torch eager", lambda: eager(*_eager_args(c)), flops=fl)
            suite.time(case, "torch.compile", lambda: compiled(*_eager_args(c)), flops=fl)
        grad = torch.randn_like(c["embeds"])
        weights = params(c)
        case = f"dual_projection fwd+bwd H={hidden} bf16"

        def ours_step():
            out = dual_projection(c["embeds"].clone(), streams(c), backend="triton")
            torch.autograd.grad(out, weights, grad)

        def eager_step(fn=eager):
            torch.autograd.grad(fn(*_eager_args(c)), weights, grad)

        suite.time(case, "heartfast triton", ours_step, flops=3 * fl)
        suite.time(case, "torch eager", eager_step, flops=3 * fl)
        suite.time(case, "torch.compile", lambda: eager_step(compiled), flops=3 * fl)
