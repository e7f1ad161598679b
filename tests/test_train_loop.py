import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from toy_training import make_trainer  # noqa: E402

from heartfast.train.loop import DataOrder  # noqa: E402
from heartfast.train.schedule import lr_factor  # noqa: E402


def test_interrupted_and_resumed_run_gives_the_same_losses(tmp_path):
    full = [r["loss"] for r in make_trainer(str(tmp_path / "a")).fit()]
    first = make_trainer(str(tmp_path / "b"))
    first.fit(on_step=lambda row: setattr(first, "_stop_requested", row["step"] == 3))
    assert first.step == 3 and (tmp_path / "b" / "latest.pt").exists()
    resumed = make_trainer(str(tmp_path / "b")).fit()
    assert [r["step"] for r in resumed] == list(range(1, 7))
    assert [r["loss"] for r in resumed] == full
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 6
    assert (tmp_path / "b" / "loss.png").stat().st_size > 1000


def test_checkpoint_from_an_older_format_is_refused_by_name(tmp_path):
    first = make_trainer(str(tmp_path / "b"))
    first.fit(on_step=lambda row: setattr(first, "_stop_requested", row["step"] == 2))
    path = tmp_path / "b" / "latest.pt"
    payload = torch.load(path, weights_only=False)
    del payload["format"]                       # what a checkpoint of the first format looks like here
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"latest.pt: a checkpoint in format 1 .*Move the file away"):
        make_trainer(str(tmp_path / "b")).fit()


def test_accumulation_equals_one_big_batch(tmp_path):
    big = [r["loss"] for r in make_trainer(str(tmp_path / "a"), steps=3).fit()]
    acc = [r["loss"] for r in make_trainer(str(tmp_path / "b"), steps=3, accumulation=4).fit()]
    assert acc == pytest.approx(big, rel=1e-5)


def test_data_order_is_resumable_and_covers_epochs():
    a = DataOrder(5, seed=3)
    first = a.take(7)
    b = DataOrder(5, seed=3)
    b.position = 4
    assert b.take(3) == first[4:]
    assert sorted(first[:5]) == list(range(5))


def test_schedules():
    assert lr_factor(0, 10, 2) == 0.5 and lr_factor(1, 10, 2) == 1.0
    assert lr_factor(10, 10, 2, "cosine") == pytest.approx(0.0)
    assert lr_factor(6, 10, 2, "linear") == pytest.approx(0.5)
    with pytest.raises(ValueError):
        lr_factor(3, 10, 0, "step")


def torchrun(nproc: int, *args: str) -> object:
    """Run tests/helpers/toy_training.py under torchrun; returns the JSON its rank 0 prints last."""
    script = Path(__file__).parent / "helpers" / "toy_training.py"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
                          "--standalone", str(script), *args], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    assert torchrun(2, str(tmp_path / "p2"), "8") == pytest.approx(torchrun(1, str(tmp_path / "p1"), "8"), rel=1e-5)


@pytest.mark.slow
def test_fsdp_two_processes_match_one_and_resume_exactly(tmp_path):
    fsdp = torchrun(2, "fsdp", str(tmp_path / "fsdp"))
    trainer = make_trainer(str(tmp_path / "one"), dropout=0.0)
    one = trainer.fit()
    # Sharded over 2 processes with 2 micro-batches each (gradient sync on the last only) = one process
    # with the same global batch at once; the clipped norm is that of the whole gradient.
    assert fsdp["loss0"] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert fsdp["grad_norm0"] == pytest.approx([r["grad_norm"] for r in one], rel=1e-5)
    gathered = torch.load(tmp_path / "fsdp" / "full0_state.pt")
    assert gathered.keys() == trainer.model.state_dict().keys()
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(gathered[name], value, rtol=1e-5, atol=1e-6)
    # A frozen layer and a frozen weight sharing an FSDP unit with a trained bias: only the bias moves.
    assert fsdp["frozen_unchanged"] and fsdp["trained_changed"]
    # With dropout (each process its own RNG stream), interrupted at step 3 and resumed under FSDP.
    assert fsdp["resumed_steps"] == list(range(1, 7)) and fsdp["resumed"] == fsdp["full"]
    assert len(fsdp["bf16"]) == 2 and all(math.isfinite(x) for x in fsdp["bf16"])
    # bf16: frozen weights stored in bf16 before sharding, trainable ones keep fp32 masters, in one unit.
    in_bf16 = {n for n, d in fsdp["bf16_dtypes"].items() if d == "bfloat16"}
    assert in_bf16 == {"inp.weight", "inp.bias", "blocks.0.weight"}
    # The FSDP checkpoint is the single-process format: a plain model continues with the same losses.
    continued = make_trainer(str(tmp_path / "fsdp" / "cut0"), dropout=0.0, accumulation=2)
    assert continued.resume() and continued.step == 3
    assert [r["loss"] for r in continued.fit()[3:]] == pytest.approx(fsdp["loss0"][3:], rel=1e-5)


def test_bf16_training_keeps_frozen_weights_in_bf16_and_trainable_in_fp32(tmp_path):
    from toy_training import ToyData, collate, loss_fn

    from heartfast.train.loop import TrainConfig, Trainer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 1))
    model[0].requires_grad_(False)
    frozen_before = model[0].weight.detach().clone()
    config = TrainConfig(steps=2, lr=1e-2, batch_size=8, out=str(tmp_path), progress=False, precision="bf16")
    trainer = Trainer(model, ToyData(), collate, loss_fn, lambda b: len(b[0]), config)
    assert model[0].weight.dtype == torch.bfloat16 and model[1].weight.dtype == torch.float32
    assert torch.equal(model[0].weight.float(), frozen_before.bfloat16().float())
    rows = [trainer.train_step() for _ in range(2)]
    assert all(r["loss"] == r["loss"] for r in rows)          # finite, not NaN
    assert model[1].weight.dtype == torch.float32 and model[1].weight.grad is None


@pytest.mark.slow
def test_fsdp_sft_stage_saves_a_whole_model_that_loads(tmp_path):
    """`heartfast train sft` under torchrun with FSDP: the sharded weights are gathered and saved once; a
    trainable signal encoder runs (and learns) inside the sharded model."""
    from heartfast.model.heartcare import HeartcareGPT
    from heartfast.model.presets import build_model

    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "heartfast", "train", "sft", "--preset", "tiny", "--data", "synthetic:40",
                           "--steps", "2", "--out", str(out), "--quiet", "--set", "train.parallel=fsdp",
                           "--set", "train.batch_size=4", "--set", "model.train_signal_encoder=true",
                           "--set", "model.signal_warmup_steps=2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model saved to") == 1           # the main process reports
    model = HeartcareGPT.from_pretrained(out / "model")
    assert sum(p.numel() for p in model.parameters()) > 1_000_000
    torch.manual_seed(0)   # the stage's seed: the initial weights
    start = build_model("tiny")[0]
    for name in ("queries", "patch_embed.weight", "quantizer.codebook", "decoder.norm.weight"):
        moved = not torch.equal(model.signal_encoder.state_dict()[name], start.signal_encoder.state_dict()[name])
        assert moved == (name in ("queries", "patch_embed.weight")), name
