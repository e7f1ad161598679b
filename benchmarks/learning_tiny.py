"""The learning goal of the trainer: a tiny preset's sft recipe on synthetic instruction data, timed, then
scored on held-out synthetic rhythm and axis closed questions with a confusion table per task.

    .venv/bin/python benchmarks/learning_tiny.py                       # the recipe as `heartfast train sft` runs it
    .venv/bin/python benchmarks/learning_tiny.py --preset tiny-gem --data synthetic:4000 --heldout synthetic:400:7
    .venv/bin/python benchmarks/learning_tiny.py --heldout synthetic:8:7 --set train.lr=2e-3
    .venv/bin/python benchmarks/learning_tiny.py --out runs/learning_tiny --scored-only   # re-score OUT/model

The last form is for choosing settings: read `in_run_eval` (the training seed's own test split) and keep the
held-out seed for one report per final setting.

Training is `heartfast.train.stages.run_stage` on `load_config("sft", preset=PRESET)` plus the `--set`
overrides: exactly `heartfast train sft --preset PRESET --data DATA --out OUT [--set ...]`. Wall time and CPU
time (this process, all threads) are measured around it. The held-out set is records of another generator
seed (other patients than any training record), every split of it; each closed question is answered by the
option letter the model scores highest after the prompt (what greedy decoding emits first), as the stage's
own evaluation does. Writes OUT/learning.json.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

TASKS = ("RhythmClosedQA", "AxisClosedQA")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@torch.no_grad()
def predicted_letters(model, tokenizer, items, cache, batch_size: int = 32) -> list[str]:
    """The option letter each closed item's prompt makes most likely as the first answer token."""
    from heartfast.instruct.items import LETTERS
    from heartfast.train.packing import pack
    from heartfast.train.samples import item_sample

    letter_ids = torch.tensor([tokenizer(f"{letter}. x", add_special_tokens=False)["input_ids"][0]
                               for letter in LETTERS])
    model.eval()
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = pack([item_sample(it, model, tokenizer, cache, with_answer=False) for it in chunk])
        hidden = model.hidden_states(batch)[0, batch.cu_seqlens[1:].long() - 1]
        out += [LETTERS[i] for i in model.llm.lm_head(hidden)[:, letter_ids].argmax(-1).tolist()]
    return out


def confusion(items, letters) -> dict:
    """Per task: accuracy; per true answer text: items, accuracy and the answers given; and `contested`: the
    items whose options hold two or more answers that are correct somewhere in the task's held-out set.

    Only a contested item needs the ECG: where one option alone is ever a correct answer, eliminating the
    never-correct statements picks it. `chance` is what guessing among the plausible options scores there.
    """
    report: dict = {}
    by_task = defaultdict(list)
    for item, letter in zip(items, letters):
        truth = item.options["ABCD".index(item.correct)]
        given = item.options["ABCD".index(letter)]
        by_task[item.task].append((truth, given, item.options))
    for task, rows in sorted(by_task.items()):
        answers = {t for t, _, _ in rows}
        classes = {}
        for truth in sorted(answers):
            given = [g for t, g, _ in rows if t == truth]
            classes[truth] = {"items": len(given), "accuracy": sum(g == truth for g in given) / len(given),
                              "answered": dict(Counter(given).most_common())}
        contested = [(t == g, 1 / len(answers & set(o))) for t, g, o in rows if len(answers & set(o)) > 1]
        report[task] = {"items": len(rows), "accuracy": sum(t == g for t, g, _ in rows) / len(rows),
                        "contested": {"items": len(contested),
                                      "accuracy": sum(ok for ok, _ in contested) / max(len(contested), 1),
                                      "chance": sum(c for _, c in contested) / max(len(contested), 1)},
                        "per_class": classes}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="model preset (its sft recipe applies)")
    parser.add_argument("--data", default="synthetic:2400", help="training records (synthetic:N[:seed])")
    parser.add_argument("--heldout", default="synthetic:600:7", help="held-out records (another seed)")
    parser.add_argument("--out", default="runs/learning_tiny")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--scored-only", action="store_true",
                        help="no training: score the model of an earlier run in OUT on --heldout")
    args = parser.parse_args()

    from heartfast.instruct.dataset import build_items
    from heartfast.io.sources import list_records
    from heartfast.model.heartcare import HeartcareGPT
    from heartfast.model.vocab import load_text_tokenizer
    from heartfast.train.config import load_config
    from heartfast.train.samples import FeatureCache
    from heartfast.train.stages import run_stage

    out = Path(args.out)
    config = load_config("sft", overrides=[*args.set, f"data.source={json.dumps(args.data)}",
                                           f"train.out={json.dumps(str(out))}"], preset=args.preset)
    config.train.progress = not args.quiet
    if args.scored_only:
        earlier = json.loads((out / "learning.json").read_text())
        summary = {"steps": earlier["steps"], "train_items": earlier["train_items"],
                   "losses": [earlier["final_loss"]], "eval": earlier["in_run_eval"]}
        wall, cpu = earlier["train_wall_s"], earlier["train_cpu_s"]
    else:
        wall, cpu = time.perf_counter(), cpu_seconds()
        summary = run_stage(config, progress=not args.quiet)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu

    model, tokenizer = HeartcareGPT.from_pretrained(out / "model"), load_text_tokenizer(out / "model")
    cache = FeatureCache(model, config.data.images)
    records = [ref.load() for ref in list_records(args.heldout)]
    cache.add(records)
    items = [it for it in build_items(records, seed=1, tasks=TASKS, measurements=None) if it.correct]
    command = (f"heartfast train sft --preset {args.preset} --data {args.data} --out {out} "
               + " ".join(f"--set {s}" for s in args.set))
    report = {"command": earlier["command"] if args.scored_only else command,
              "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1), "torch_threads": torch.get_num_threads(),
              "steps": summary["steps"], "train_items": summary["train_items"],
              "final_loss": summary["losses"][-1], "in_run_eval": summary.get("eval"),
              "heldout": args.heldout, "heldout_eval": confusion(items, predicted_letters(model, tokenizer, items,
                                                                                          cache))}
    (out / "learning.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "heldout_eval"}, indent=1))
    for task, row in report["heldout_eval"].items():
        c = row["contested"]
        print(f"{task}: {row['accuracy']:.3f} on {row['items']} held-out items; contested {c['accuracy']:.3f} "
              f"on {c['items']} (chance {c['chance']:.3f})")
        for truth, c in row["per_class"].items():
            print(f"  {truth:<28} {c['accuracy']:.3f} of {c['items']:>4}  {c['answered']}")


if __name__ == "__main__":
    main()
