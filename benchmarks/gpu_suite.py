"""The GPU suite: one command checks every kernel against its reference on the GPU and times it
against its alternatives, then writes benchmarks/results/<device>-<date>.json and a markdown table.

    python3 benchmarks/gpu_suite.py [--only vq,attention] [--quick]

Every module in benchmarks/gpu/ defines `run(suite: Suite)`; it calls `suite.check(...)` for correctness
and `suite.time(...)` for each implementation of a case. The two ceilings (copy bandwidth, bf16 matmul)
are measured first so every row can state its share of the roofline.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from source_tree import use_source_tree  # noqa: E402

use_source_tree()


@dataclass
class Timing:
    case: str
    impl: str
    ms: float
    flops: float | None = None
    bytes: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Check:
    case: str
    ok: bool
    error: float
    tolerance: float
    note: str = ""


class Suite:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.timings: list[Timing] = []
        self.checks: list[Check] = []
        self.failures: list[str] = []
        self.ceilings: dict[str, float] = {}

    def check(self, case: str, out: torch.Tensor, ref: torch.Tensor, tolerance: float, note: str = "") -> bool:
        """Relative error ||out - ref|| / ||ref|| against `tolerance`."""
        err = ((out.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()
        ok = bool(err < tolerance)
        self.checks.append(Check(case, ok, err, tolerance, note))
        print(f"  check {case}: rel err {err:.2e} (< {tolerance:g}) {'ok' if ok else 'FAIL'}", flush=True)
        return ok

    def expect(self, case: str, ok: bool, note: str = "") -> bool:
        """A yes/no check (identical tokens, exact equality): error 0 when it holds, 1 when not."""
        self.checks.append(Check(case, ok, 0.0 if ok else 1.0, 0.5, note))
        print(f"  check {case}: {'ok' if ok else 'FAIL'} {note}", flush=True)
        return ok

    def record(self, case: str, impl: str, ms: float, flops: float | None = None, bytes: float | None = None,
               **extra) -> None:
        """A timing measured by the caller (end-to-end paths timed by wall clock over whole workloads)."""
        self.timings.append(Timing(case, impl, ms, flops, bytes, extra))
        print(f"  time {case} [{impl}]: {ms:.3f} ms {extra}", flush=True)

    def time(self, case: str, impl: str, fn: Callable[[], object], flops: float | None = None,
             bytes: float | None = None, **extra) -> float | None:
        """Median ms of `fn` (triton.testing.do_bench: warm-up, L2 flush between runs)."""
        from triton.testing import do_bench

        try:
            ms = float(do_bench(fn, warmup=25, rep=100 if self.quick else 300, return_mode="median"))
        except Exception as exc:  # a failing alternative is recorded, not fatal
            self.failures.append(f"{case}/{impl}: {type(exc).__name__}: {exc}")
            print(f"  time {case} [{impl}]: failed ({type(exc).__name__}: {exc})", flush=True)
            return None
        self.timings.append(Timing(case, impl, ms, flops, bytes, extra))
        rate = f"  {flops / ms / 1e9:.1f} TFLOP/s" if flops else ""
        bw = f"  {bytes / ms / 1e9:.2f} TB/s" if bytes else ""
        print(f"  time {case} [{impl}]: {ms:.4f} ms{rate}{bw}", flush=True)
        return ms

    def roofline_ms(self, flops: float | None, nbytes: float | None) -> float | None:
        parts = []
        if flops and "bf16_tflops" in self.ceilings:
            parts.append(flops / (self.ceilings["bf16_tflops"] * 1e9))
        if nbytes and "copy_tbps" in self.ceilings:
            parts.append(nbytes / (self.ceilings["copy_tbps"] * 1e9))
        return max(parts) if parts else None


def measure_ceilings(suite: Suite) -> None:
    """Device-to-device copy bandwidth and bf16 matmul throughput: the denominators of every roofline."""
    n = 1 << 28
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    ms = suite.time("ceiling copy 256MiB", "torch copy_", lambda: dst.copy_(src), bytes=2 * n)
    suite.ceilings["copy_tbps"] = 2 * n / ms / 1e9
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    flops = 2 * 8192 ** 3
    ms = suite.time("ceiling matmul 8192^3 bf16", "torch mm", lambda: a @ b, flops=flops)
    suite.ceilings["bf16_tflops"] = flops / ms / 1e9


def environment() -> dict:
    import triton

    def run(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return ""

    return {
        "device": torch.cuda.get_device_name(),
        "driver": run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(),
        # the device tool copies the working tree but not always a current .git: callers may name the commit
        "commit": os.environ.get("HEARTFAST_COMMIT") or run(["git", "-C", str(ROOT), "rev-parse", "HEAD"]) or "unknown",
        "date": dt.date.today().isoformat(),
    }


def markdown(suite: Suite, env: dict) -> str:
    lines = [f"# GPU suite: {env['device']} ({env['date']})", "",
             f"driver {env['driver']}, torch {env['torch']}, triton {env['triton']}, commit {env['commit'][:10]}",
             f"ceilings: copy {suite.ceilings.get('copy_tbps', 0):.2f} TB/s, "
             f"bf16 matmul {suite.ceilings.get('bf16_tflops', 0):.0f} TFLOP/s", "",
             "| case | impl | ms | vs heartfast | TFLOP/s | TB/s | % roofline |", "|---|---|---|---|---|---|---|"]
    ours: dict[str, float] = {}
    for t in suite.timings:
        if t.impl.startswith("heartfast"):
            ours.setdefault(t.case, t.ms)   # the first heartfast row of a case is the default path
    for t in suite.timings:
        ratio = f"{t.ms / ours[t.case]:.2f}x" if t.case in ours else ""
        tf = f"{t.flops / t.ms / 1e9:.1f}" if t.flops else ""
        bw = f"{t.bytes / t.ms / 1e9:.2f}" if t.bytes else ""
        roof = suite.roofline_ms(t.flops, t.bytes)
        pct = f"{100 * roof / t.ms:.0f}%" if roof else ""
        lines.append(f"| {t.case} | {t.impl} | {t.ms:.4f} | {ratio} | {tf} | {bw} | {pct} |")
    lines += ["", "| check | rel err | tolerance | ok |", "|---|---|---|---|"]
    lines += [f"| {c.case} | {c.error:.2e} | {c.tolerance:g} | {'yes' if c.ok else 'NO'} |" for c in suite.checks]
    if suite.failures:
        lines += ["", "Failures:", *[f"- {f}" for f in suite.failures]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated module names from benchmarks/gpu/, run in that order")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("the GPU suite needs a CUDA device", file=sys.stderr)
        return 2
    import gpu

    suite = Suite(args.quick)
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  triton {env['triton']}", flush=True)
    measure_ceilings(suite)
    names = sorted(m.name for m in pkgutil.iter_modules(gpu.__path__))
    wanted = [m for m in args.only.split(",") if m] or names   # in the order given
    started = time.perf_counter()
    for name in wanted:
        print(f"== {name}", flush=True)
        try:
            importlib.import_module(f"gpu.{name}").run(suite)
        except Exception:
            suite.failures.append(f"{name}: {traceback.format_exc(limit=4)}")
            traceback.print_exc()
        torch.cuda.empty_cache()
        print(f"== {name} done at {time.perf_counter() - started:.0f} s", flush=True)
        write(suite, env, args.out)   # after every module: a run cut short keeps what it measured
    print(markdown(suite, env))
    return 1 if suite.failures or not all(c.ok for c in suite.checks) else 0


def write(suite: Suite, env: dict, out: Path) -> None:
    """benchmarks/results/<device>-<date>.{json,md}, and copies under $OUT when set (the device tool)."""
    stem = f"{env['device'].replace(' ', '_')}-{env['date']}"
    data = json.dumps({"env": env, "ceilings": suite.ceilings, "checks": [asdict(c) for c in suite.checks],
                       "timings": [asdict(t) for t in suite.timings], "failures": suite.failures}, indent=1)
    table = markdown(suite, env)
    for folder in (out, Path(os.environ["OUT"]) if os.environ.get("OUT") else None):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stem}.json").write_text(data)
            (folder / f"{stem}.md").write_text(table)


if __name__ == "__main__":
    raise SystemExit(main())
