"""The main job end to end, on the embedded synthetic ECGs (or `--data DIR`), in minutes on a CPU:

prepare shards → instruction data and a bench → train Beat → align → sft (tiny HeartcareGPT, both DSPA
streams: Beat latents and rendered 6x2 images) → serve the bench through the engine → evaluate → a results
table and plots. sft trains on every task type the bench asks (the tiny recipe's own sft, tuned for the
rhythm and axis learning goal, sees two), with the bench's measured per-lead evidence in its grounded
interpretations, each item weighing the same in the loss (with plain token sums the 700-token grounded
interpretations take nearly all the gradient), in 1000 steps of 8 items (400 steps of 16, 0.8x the cost, leave
the closed questions' option letters weaker: docs/training.md). Every stage writes into OUT and is
resumable, so an interrupted demo continues where it stopped when run again with the same OUT.
"""
from __future__ import annotations

import json
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from heartfast.train.loop import TrainConfig


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    data: str = ""                # a database folder; empty: synthetic ECGs
    records: int = 600            # synthetic training records
    bench_records: int = 24       # synthetic bench records (another seed: patients never seen in training)
    beat_steps: int = 150
    align_steps: int = 100
    sft_steps: int = 1000
    sft_batch_size: int = 8
    warmup_steps: int | None = None   # signal-encoder warm-up steps before sft (None: the recipe's)
    max_tokens: int = 800         # room for the longest bench answers (grounded interpretations, ~750 tokens)
    progress: bool = True


@dataclass
class DemoResult:
    seconds: dict[str, float] = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    throughput: str = ""
    plots: list[Path] = field(default_factory=list)


@contextmanager
def _stage(name: str, result: DemoResult):
    """Print the stage's name and record how long it took."""
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    yield
    result.seconds[name] = time.perf_counter() - start


def run_demo(cfg: DemoConfig) -> DemoResult:
    from heartfast.data.prepare import prepare
    from heartfast.engine.batch import answer_items
    from heartfast.engine.engine import Engine
    from heartfast.engine.sampling import SamplingParams
    from heartfast.evaluate.bench import bench_items, read_bench, write_bench
    from heartfast.evaluate.harness import evaluate, read_answers
    from heartfast.io.sources import list_records
    from heartfast.model.heartcare import HeartcareGPT
    from heartfast.model.vocab import load_text_tokenizer
    from heartfast.train.beat import run_beat_stage
    from heartfast.train.config import load_config
    from heartfast.train.stages import run_stage

    out, result = Path(cfg.out), DemoResult()
    out.mkdir(parents=True, exist_ok=True)
    source = cfg.data or f"synthetic:{cfg.records}:1"
    bench_source = cfg.data or f"synthetic:{cfg.bench_records}:2"
    data_dir, bench_dir = out / "data", out / "bench"

    with _stage("prepare data", result):
        prepared = prepare(source, data_dir, fs=500, progress=cfg.progress)
        print(f"{prepared.records} records in {data_dir} ({len(prepared.bad)} bad records skipped)")
    with _stage("build bench", result):
        if not (bench_dir / "items.jsonl").is_file():
            records = (ref.load() for ref in list_records(bench_source))
            pairs = bench_items(records, seed=0, split="test", measurements="auto", progress=cfg.progress)
            manifest = write_bench(pairs, bench_dir, bench_source, 0, "test")
            print(f"{manifest['items']} items over {manifest['records']} records")
    with _stage("train beat", result):
        beat = run_beat_stage(str(data_dir), out / "beat", "tiny",
                              TrainConfig(steps=cfg.beat_steps, lr=3e-3, batch_size=32, warmup_steps=10,
                                          out=str(out / "beat"), progress=cfg.progress), progress=cfg.progress)
        print(f"Beat: loss {beat['final_loss']:.3f}, held-out PRD {beat['prd_percent']:.1f}%")
    for stage, steps, model_settings in (
            ("align", cfg.align_steps, [f"model.signal_encoder={json.dumps(str(out / 'beat' / 'model'))}"]),
            ("sft", cfg.sft_steps, [f"model.path={json.dumps(str(out / 'align' / 'model'))}",
                                    "data.tasks=[]", "data.weighting='item'", "data.measurements='auto'",
                                    f"train.batch_size={cfg.sft_batch_size}",
                                    *([] if cfg.warmup_steps is None else
                                      [f"model.signal_warmup_steps={cfg.warmup_steps}"])])):
        with _stage(stage, result):
            config = load_config(stage, overrides=[*model_settings, f"data.source={json.dumps(str(data_dir))}",
                                                   "data.images=true", f"train.steps={steps}",
                                                   f"train.out={json.dumps(str(out / stage))}"], preset="tiny")
            config.train.progress = cfg.progress
            summary = run_stage(config, progress=cfg.progress)
            print(f"{stage}: loss {summary['losses'][0]:.3f} -> {summary['losses'][-1]:.3f}")
    with _stage("serve bench", result):
        model_dir = out / "sft" / "model"
        model, tokenizer = HeartcareGPT.from_pretrained(model_dir), load_text_tokenizer(model_dir)
        engine = Engine(model, tokenizer, max_seqs=64)
        items = [item for _, item in read_bench(bench_dir)]
        report = answer_items(engine, items, bench_source, out / "answers.jsonl",
                              SamplingParams(max_tokens=cfg.max_tokens, repetition_penalty=1.1),
                              progress=cfg.progress)
        result.throughput = engine.stats.summary() if report.answered else "all answers were already there"
    with _stage("evaluate", result):
        result.evaluation = evaluate(read_bench(bench_dir), read_answers(out / "answers.jsonl"))
        (out / "results.json").write_text(json.dumps(result.evaluation, indent=1))
    result.plots = write_plots(out, result.evaluation, bench_dir, bench_source)
    return result


def write_plots(out: Path, evaluation: dict, bench_dir: Path, bench_source: str) -> list[Path]:
    """Loss curves of the three stages, closed-QA accuracy per task, and a rendered ECG with the model's answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from heartfast.evaluate.bench import read_bench
    from heartfast.evaluate.harness import read_answers
    from heartfast.io.sources import list_records
    from heartfast.render.renderer import render

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), dpi=100)
    for ax, stage in zip(axes, ("beat", "align", "sft")):
        rows = [json.loads(line) for line in (out / stage / "metrics.jsonl").read_text().splitlines() if line]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1)
        ax.set(title=f"{stage} loss", xlabel="step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(plots / "loss_curves.png")
    plt.close(fig)

    closed = [(f"{subset}\n{task.replace('ClosedQA', '')}", m["accuracy"])
              for subset, tasks in evaluation["subsets"].items() for task, m in tasks.items() if "accuracy" in m]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(closed)), 3.5), dpi=100)
    ax.bar(range(len(closed)), [a for _, a in closed], color="#c0392b")
    ax.axhline(25, color="grey", ls="--", lw=1, label="chance (4 options)")
    ax.set_xticks(range(len(closed)), [n for n, _ in closed], fontsize=7)
    ax.set(ylabel="accuracy %", ylim=(0, 100), title="closed-QA accuracy on the held-out bench")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plots / "accuracy.png")
    plt.close(fig)

    answers = read_answers(out / "answers.jsonl")
    item = next(i for s, i in read_bench(bench_dir) if i.task == "RhythmClosedQA" and i.id in answers)
    record = next(ref for ref in list_records(bench_source) if ref.id == item.record_ids[0]).load()
    image = render(record.to_12_leads()[None], record.fs, layout="6x2", size=(1100, 1200))[0]
    fig, ax = plt.subplots(figsize=(8, 9.6), dpi=100)
    ax.imshow(image.permute(1, 2, 0).contiguous().numpy())
    ax.axis("off")
    said = textwrap.shorten(answers[item.id], 100, placeholder=" ...")   # an untrained model may ramble
    ax.set_title(f"{item.question}\nmodel: {said!r}    truth: {item.correct}. "
                 f"{item.options[ord(item.correct) - 65]}", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(plots / "ecg_answer.png")
    plt.close(fig)
    return [plots / "loss_curves.png", plots / "accuracy.png", plots / "ecg_answer.png"]
