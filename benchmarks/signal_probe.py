"""How readable are rhythm and axis from a signal stream? A small Transformer classifier trained on the tokens
of each encoder the tiny presets can use, scored on synthetic records of another seed.

    .venv/bin/python benchmarks/signal_probe.py                                  # every stream, 4000 records
    .venv/bin/python benchmarks/signal_probe.py --streams timeseries timeseries-trained --steps 600 --batch 16

Streams: `beat` (Beat 'tiny', random), `beat:DIR` (a Beat saved by `heartfast train beat`), `timeseries`
(GEM's time-series encoder 'tiny', random and frozen, as in the `tiny-gem` preset) and `timeseries-trained`
(the same encoder trained together with the probe). The probe (2 layers, width 64, mean-pooled, one head per
question) sees what the decoder would see at the `<signal>` placeholders; with `--steps 600 --batch 16` it
gets the sample budget of the tiny sft recipe. Labels are the generator's rhythm (SR, SBRAD, STACH, AFIB)
and axis class (normal, left, right).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from heartfast.train.warmup import AnswerHead

RHYTHMS, AXES = ("SR", "SBRAD", "STACH", "AFIB"), ("MID", "LAD", "RAD")


def labels(batch) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([RHYTHMS.index(batch.rhythm(i)) for i in range(len(batch))]),
            torch.tensor([AXES.index(batch.heart_axis(i)) for i in range(len(batch))]))


def stream(name: str):
    """(encoder, inputs(signals) -> what the probe trains on, tokens(encoder, inputs) -> [B, n, d])."""
    if name.startswith("beat"):
        from heartfast.model.beat import BeatConfig, BeatTokenizer

        directory = name.partition(":")[2]
        encoder = BeatTokenizer.from_pretrained(directory) if directory else BeatTokenizer(BeatConfig.preset("tiny"))
        return encoder, lambda x: encoder.latents(x, 500.0), lambda e, x: x
    from heartfast.model.timeseries import TimeSeriesConfig, TimeSeriesEncoder

    encoder = TimeSeriesEncoder(TimeSeriesConfig.preset("tiny"))
    if name == "timeseries-trained":
        return encoder, lambda x: encoder.prepare(x, 500.0), lambda e, x: e(x)
    return encoder, lambda x: encoder(encoder.prepare(x, 500.0)).detach(), lambda e, x: x


def run(name: str, train, test, steps: int, batch: int) -> dict:
    torch.manual_seed(0)
    start = time.perf_counter()
    encoder, inputs, tokens = stream(name)
    with torch.no_grad():
        x_train = torch.cat([inputs(train.signals[i:i + 100]) for i in range(0, len(train), 100)])
        x_test = torch.cat([inputs(test.signals[i:i + 100]) for i in range(0, len(test), 100)])
    (r_train, a_train), (r_test, a_test) = labels(train), labels(test)
    with torch.no_grad():
        shape = list(tokens(encoder, x_test[:1]).shape[1:])
    probe = AnswerHead(shape[-1], [len(RHYTHMS), len(AXES)], tokens=128)   # the trainer's warm-up head
    params = list(probe.parameters()) + (list(encoder.parameters()) if name == "timeseries-trained" else [])
    optimizer = torch.optim.AdamW(params, 1e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (batch,))
        rhythm, axis = probe(tokens(encoder, x_train[idx]))
        loss = nn.functional.cross_entropy(rhythm, r_train[idx]) + nn.functional.cross_entropy(axis, a_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        rhythm, axis = (t.argmax(-1) for t in probe(tokens(encoder, x_test)))
    per_class = {c: round(float((rhythm[r_test == k] == k).float().mean()), 3) for k, c in enumerate(RHYTHMS)}
    return {"stream": name, "tokens": shape,
            "rhythm": round(float((rhythm == r_test).float().mean()), 3), "rhythm_per_class": per_class,
            "axis": round(float((axis == a_test).float().mean()), 3), "seconds": round(time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", default=["beat", "timeseries", "timeseries-trained"])
    parser.add_argument("--records", type=int, default=4000, help="training records (seed 0)")
    parser.add_argument("--heldout", type=int, default=400, help="held-out records (seed 7)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    from heartfast.signal.synthetic import generate

    train, test = generate(args.records, seed=0), generate(args.heldout, seed=7)
    for name in args.streams:
        print(run(name, train, test, args.steps, args.batch), flush=True)


if __name__ == "__main__":
    main()
