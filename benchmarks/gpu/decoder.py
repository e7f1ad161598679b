"""The fused decoder-layer kernels on the GPU (kernels/decoder.py): correctness against the torch
references in bf16 and fp32 (forward, and the training backward), and timing against eager PyTorch (the
reference, several kernels each) and torch.compile of the same reference (1.1B shapes), at a decode step
(64 rows) and a prefill step (16,384 rows); forward+backward at a training step's 16,384 rows.

Shapes: TinyLlama 1.1B (hidden 2048, MLP 5632, 32 query / 4 key heads of 64) and Qwen2.5-7B (hidden 3584,
MLP 18944, 28 / 4 heads of 128), the decoders of the engine benchmark and of HeartcareGPT-7B.
    python3 benchmarks/gpu_suite.py --only decoder
"""
from __future__ import annotations

import torch

from heartfast.kernels.decoder import add_rms_norm, rotary, rotary_, silu_mul
from heartfast.ops.decoder import add_rms_norm_reference, rotary_reference

SHAPES = {"1.1B": dict(hidden=2048, mlp=5632, hq=32, hk=4, d=64), "7B": dict(hidden=3584, mlp=18944, hq=28, hk=4, d=128)}
ROWS = (64, 16384)


def _inputs(shape: dict, rows: int, dtype: torch.dtype) -> dict:
    hq, hk, d = shape["hq"], shape["hk"], shape["d"]
    angles = torch.rand(rows, d // 2, device="cuda") * 100
    return {
        "x": torch.randn(rows, shape["hidden"], device="cuda", dtype=dtype),
        "delta": torch.randn(rows, shape["hidden"], device="cuda", dtype=dtype),
        "w": (1 + 0.1 * torch.randn(shape["hidden"], device="cuda")).to(dtype),
        "qkv": torch.randn(rows, (hq + 2 * hk) * d, device="cuda", dtype=dtype),
        "cos": torch.cat((angles.cos(), angles.cos()), -1).to(dtype),
        "sin": torch.cat((angles.sin(), angles.sin()), -1).to(dtype),
        "gate_up": torch.randn(rows, 2 * shape["mlp"], device="cuda", dtype=dtype),
    }


def _qk(c: dict, shape: dict) -> tuple[torch.Tensor, torch.Tensor]:
    hq, hk, d = shape["hq"], shape["hk"], shape["d"]
    return c["qkv"][:, :hq * d].view(-1, hq, d), c["qkv"][:, hq * d:(hq + hk) * d].view(-1, hk, d)


def _rotary_reference(qkv: torch.Tensor, cos, sin, shape: dict) -> torch.Tensor:
    hq, hk, d = shape["hq"], shape["hk"], shape["d"]
    q, k = qkv[:, :hq * d].view(-1, hq, d), qkv[:, hq * d:(hq + hk) * d].view(-1, hk, d)
    return torch.cat((rotary_reference(q, cos, sin).flatten(1), rotary_reference(k, cos, sin).flatten(1)), -1)


def _silu_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


def check(suite, dtype: torch.dtype, tolerance: float) -> None:
    shape = SHAPES["1.1B"]
    c = _inputs(shape, 999, dtype)
    out, total = add_rms_norm(c["x"], c["delta"], c["w"], 1e-5)
    want, want_total = add_rms_norm_reference(c["x"], c["delta"], c["w"], 1e-5)
    suite.check(f"add_rms_norm {dtype} rows 999", out, want, tolerance)
    suite.expect(f"add_rms_norm {dtype} residual sum == torch's", torch.equal(total, want_total))
    want = _rotary_reference(c["qkv"], c["cos"], c["sin"], shape)
    q, k = _qk(c, shape)
    rotary_(q, k, c["cos"], c["sin"])
    hq, hk, d = shape["hq"], shape["hk"], shape["d"]
    suite.check(f"rotary {dtype} in place on packed qkv", c["qkv"][:, :(hq + hk) * d], want, tolerance)
    gate, up = c["gate_up"].chunk(2, dim=-1)
    suite.check(f"silu_mul {dtype} on packed gate_up", silu_mul(gate, up), _silu_reference(c["gate_up"]), tolerance)


def _grads(fn, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    outs = fn(*leaves)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gen = torch.Generator(device="cuda").manual_seed(1)
    loss = sum((o.float() * torch.randn(o.shape, device="cuda", generator=gen)).sum() for o in outs)
    return list(torch.autograd.grad(loss, leaves))


def _training_cases(c: dict, shape: dict) -> dict:
    """op -> (fused fn, reference fn, inputs): the training (autograd) path of each op."""
    hq, hk, d = shape["hq"], shape["hk"], shape["d"]
    q = c["qkv"][:, :hq * d].reshape(-1, hq, d)
    k = c["qkv"][:, hq * d:(hq + hk) * d].reshape(-1, hk, d)
    return {
        "add_rms_norm": (lambda x, dl, w: add_rms_norm(x, dl, w, 1e-5),
                         lambda x, dl, w: add_rms_norm_reference(x, dl, w, 1e-5), [c["x"], c["delta"], c["w"]]),
        "rotary": (lambda q, k: rotary(q, k, c["cos"], c["sin"]),
                   lambda q, k: (rotary_reference(q, c["cos"], c["sin"]), rotary_reference(k, c["cos"], c["sin"])),
                   [q, k]),
        "silu_mul": (lambda gu: silu_mul(*gu.chunk(2, dim=-1)), _silu_reference, [c["gate_up"]]),
    }


def check_backward(suite, dtype: torch.dtype, tolerance: float) -> None:
    shape = SHAPES["1.1B"]
    for op, (fused, reference, inputs) in _training_cases(_inputs(shape, 999, dtype), shape).items():
        for i, (got, want) in enumerate(zip(_grads(fused, inputs), _grads(reference, inputs))):
            suite.check(f"{op} backward {dtype} grad of input {i}", got, want, tolerance)


def time_training(suite) -> None:
    shape = SHAPES["1.1B"]
    rows = ROWS[-1]
    c = _inputs(shape, rows, torch.bfloat16)
    for op, (fused, reference, inputs) in _training_cases(c, shape).items():
        case = f"{op} fwd+bwd 1.1B bf16 rows {rows}"
        suite.time(case, "heartfast triton", lambda: _grads(fused, inputs))
        suite.time(case, "torch eager", lambda: _grads(reference, inputs))


def time_kernels(suite) -> None:
    for name, shape in SHAPES.items():
        for rows in ROWS:
            c = _inputs(shape, rows, torch.bfloat16)
            q, k = _qk(c, shape)
            gate, up = c["gate_up"].chunk(2, dim=-1)
            h, m, heads = shape["hidden"], shape["mlp"], shape["hq"] + shape["hk"]
            cases = {
                "add_rms_norm": (lambda: add_rms_norm(c["x"], c["delta"], c["w"], 1e-5),
                                 lambda: add_rms_norm_reference(c["x"], c["delta"], c["w"], 1e-5),
                                 4 * rows * h * 2),
                "rotary": (lambda: rotary_(q, k, c["cos"], c["sin"]),
                           lambda: _rotary_reference(c["qkv"], c["cos"], c["sin"], shape),
                           2 * rows * heads * shape["d"] * 2 + rows * shape["d"] * 2),
                "silu_mul": (lambda: silu_mul(gate, up), lambda: _silu_reference(c["gate_up"]), 3 * rows * m * 2),
            }
            for op, (fused, eager, nbytes) in cases.items():
                case = f"{op} {name} bf16 rows {rows}"
                suite.time(case, "heartfast triton", fused, bytes=nbytes)
                suite.time(case, "torch eager", eager, bytes=nbytes)
                if name == "1.1B":    # each compile costs seconds; one shape shows the comparison
                    suite.time(case, "torch.compile", torch.compile(eager), bytes=nbytes)


def run(suite) -> None:
    check(suite, torch.bfloat16, 1e-2)
    check(suite, torch.float32, 1e-5)
    check_backward(suite, torch.bfloat16, 2e-2)
    check_backward(suite, torch.float32, 1e-4)
    time_kernels(suite)
    time_training(suite)
