import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from heartfast.instruct.dataset import build_items
from heartfast.model.heartcare import HeartcareGPT, MultimodalBatch
from heartfast.model.presets import build_model
from heartfast.model import vocab
from heartfast.signal.synthetic import generate_records
from heartfast.train.config import load_config, parse_override, to_toml
from heartfast.train.loop import Trainer
from heartfast.train.losses import IGNORE_INDEX
from heartfast.train.packing import pack
from heartfast.train.samples import FeatureCache, item_sample
from heartfast.train.stages import (AnswerLoss, labelled_items, labelled_tokens, load_items_and_features,
                                    run_stage, set_trainable)

TINY_RUN = ["data.source='synthetic:6'", "train.batch_size=2", "train.warmup_steps=1", "evaluate=false",
            "train.progress=false", "model.signal_warmup_steps=2"]


def test_config_layers_defaults_recipe_file_and_overrides(tmp_path):
    sft = load_config("sft", preset="heartcare-3.8b")
    assert (sft.train.lr, sft.train.schedule, sft.train.warmup_steps, sft.lora.r, sft.lora.alpha) == \
        (2e-5, "linear", 100, 64, 128.0)
    assert load_config("align", preset="heartcare-7b").train.lr == 2e-4
    tiny = load_config("sft", preset="tiny")
    assert tiny.lora.r == 0 and tiny.data.tasks == ["RhythmClosedQA", "AxisClosedQA"]
    assert tiny.model.train_signal_encoder and not load_config("sft", preset="tiny-gem").model.train_signal_encoder
    gem = load_config("sft", preset="tiny-gem")
    assert (gem.model.preset, gem.lora.r, gem.train.lr) == ("tiny-gem", 0, 1e-3)
    assert gem.data.tasks == ["RhythmClosedQA", "AxisClosedQA", "RhythmOpenQA"]
    file = tmp_path / "run.toml"
    file.write_text('[train]\nlr = 3e-4\nbetas = [0.9, 0.95]\n[lora]\nr = 16\n')
    config = load_config("sft", file, ["train.lr=5e-4", "data.source=synthetic:5"], preset="tiny")
    assert (config.train.lr, config.train.betas, config.lora.r, config.data.source) == \
        (5e-4, (0.9, 0.95), 16, "synthetic:5")
    (tmp_path / "again.toml").write_text(to_toml(config))
    assert load_config("sft", tmp_path / "again.toml") == config
    assert parse_override("lora.dropout=0") == {"lora": {"dropout": 0}}
    with pytest.raises(ValueError, match="unknown setting 'lrate'"):
        load_config("sft", overrides=["train.lrate=1"])
    with pytest.raises(ValueError, match="expected float"):
        load_config("sft", overrides=["train.lr=fast"])


@pytest.fixture(scope="module")
def tiny_data():
    torch.manual_seed(0)
    model, tokenizer = build_model("tiny")
    records = generate_records(4, seed=3)
    items = list(build_items(records, tasks=["RhythmClosedQA", "AxisClosedQA", "ComparisonQA"], measurements=None))
    cache = FeatureCache(model, images=False)
    cache.add(records)
    return model, tokenizer, items, cache


def test_samples_label_the_answer_only_and_expand_markers(tiny_data):
    model, tokenizer, items, cache = tiny_data
    item = next(it for it in items if it.task == "ComparisonQA")
    sample = item_sample(item, model, tokenizer, cache)
    answer = [t for t, y in zip(sample.input_ids, sample.labels) if y != IGNORE_INDEX]
    assert tokenizer.decode(answer).startswith(item.answer)
    assert sample.input_ids[len(sample) - len(answer):] == answer          # the answer comes last
    n_signal = sample.input_ids.count(model.config.token_ids[vocab.SIGNAL])
    assert len(sample.signal_features) == 2 and n_signal == sum(f.shape[0] for f in sample.signal_features)
    prompt = item_sample(item, model, tokenizer, cache, with_answer=False)
    assert prompt.input_ids == sample.input_ids[:len(prompt)] and prompt.answer_tokens == 0


def test_packed_chunked_loss_equals_the_models_own_loss_per_sequence(tiny_data):
    model, tokenizer, items, cache = tiny_data
    samples = [item_sample(it, model, tokenizer, cache) for it in items[:3]]
    packed = AnswerLoss(model, chunk_size=64)(pack(samples))
    separate = 0.0
    for s in samples:
        batch = MultimodalBatch(torch.tensor([s.input_ids]), torch.tensor([s.labels]),
                                signal_features=torch.cat(s.signal_features))
        separate += model(batch, reduction="sum").loss
    torch.testing.assert_close(packed, separate, rtol=1e-5, atol=1e-4)


def test_per_item_loss_counts_every_item_once(tiny_data):
    """weighting = "item": the summed loss is the sum of each item's mean answer-token loss, its weight the
    number of items; "token" keeps the plain sum over answer tokens."""
    model, tokenizer, items, cache = tiny_data
    chosen = [next(it for it in items if it.task == t) for t in ("RhythmClosedQA", "ComparisonQA", "AxisClosedQA")]
    samples = [item_sample(it, model, tokenizer, cache) for it in chosen]
    assert len({s.answer_tokens for s in samples}) > 1            # answers of different lengths
    batch = pack(samples)
    per_item = AnswerLoss(model, chunk_size=64, per_item=True)(batch)
    means = [AnswerLoss(model, chunk_size=64)(pack([s])) / s.answer_tokens for s in samples]
    torch.testing.assert_close(per_item, sum(means), rtol=1e-5, atol=1e-5)
    assert labelled_items(batch) == 3 and labelled_tokens(batch) == sum(s.answer_tokens for s in samples)
    assert load_config("sft", overrides=["data.weighting=item"]).data.weighting == "item"
    with pytest.raises(ValueError, match="data.weighting"):
        load_config("sft", overrides=["data.weighting=sample"])


def test_measured_items_carry_the_per_lead_evidence_a_bench_has(tiny_data):
    """data.measurements = "auto" builds grounded interpretations from the measurement module, per lead, as
    the bench builder does; "carried" keeps to what the records carry (the synthetic truth: global values)."""
    model = tiny_data[0]
    answers = {}
    for source in ("carried", "auto"):
        config = load_config("sft", overrides=["data.source='synthetic:3'", "data.tasks=['GroundedInterpretation']",
                                               f"data.measurements={source}"], preset="tiny")
        items, _ = load_items_and_features(config, model, None, progress=False)
        answers[source] = [it.answer for it in items]
    assert answers["auto"] and all("Lead V6:" in a for a in answers["auto"])
    assert not any("Lead V6:" in a for a in answers["carried"])
    with pytest.raises(ValueError, match="data.measurements"):
        load_config("sft", overrides=["data.measurements=measured"])


def test_align_trains_only_the_signal_projector(tiny_data):
    model = build_model("tiny")[0]
    counts = set_trainable(model, load_config("align"))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if n.startswith("projector.signal_")}
    assert counts["trainable"] == sum(p.numel() for n, p in model.named_parameters() if n in names)


def test_sft_loss_falls_and_an_interrupted_run_resumes_to_the_same_losses(tmp_path, monkeypatch):
    frozen = [*TINY_RUN, "model.train_signal_encoder=false"]
    full = run_stage(load_config("sft", overrides=[*frozen, "train.steps=4", f"train.out='{tmp_path / 'a'}'"],
                                 preset="tiny"), progress=False)
    assert full["losses"][-1] < full["losses"][0]
    assert (tmp_path / "a" / "model" / "model.safetensors").is_file()
    assert encoder_changes(tmp_path / "a" / "model", "tiny") == {"encoder": False, "decoder": False}
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "features.pt", tmp_path / "b" / "features.pt")
    config = load_config("sft", overrides=[*frozen, "train.steps=4", f"train.out='{tmp_path / 'b'}'"],
                         preset="tiny")
    resumed = interrupted_then_resumed(config, monkeypatch, stop_at=2)
    assert resumed["steps"] == 4 and resumed["losses"] == full["losses"]


def interrupted_then_resumed(config, monkeypatch, stop_at: int) -> dict:
    """Run the stage until a stop is requested after step `stop_at` (as on SIGINT), then run it again: the
    second run resumes from latest.pt. Returns the resumed run's summary."""
    step = Trainer.train_step

    def stop_after(self):
        row = step(self)
        self._stop_requested = row["step"] == stop_at
        return row

    monkeypatch.setattr(Trainer, "train_step", stop_after)
    assert run_stage(config, progress=False)["steps"] == stop_at
    monkeypatch.setattr(Trainer, "train_step", step)
    return run_stage(config, progress=False)


def encoder_changes(directory, preset: str) -> dict[str, bool]:
    """Whether the saved signal encoder's feature path / its other weights differ from the stage's initial ones."""
    torch.manual_seed(0)   # the stage's seed: the same initial weights
    start = build_model(preset)[0]
    trained = HeartcareGPT.from_pretrained(directory).state_dict()
    path = {id(p) for p in start.signal_encoder_parameters()}
    changed = {"encoder": False, "decoder": False}
    for name, value in start.signal_encoder.named_parameters():
        if not torch.equal(trained[f"signal_encoder.{name}"], value):
            changed["encoder" if id(value) in path else "decoder"] = True
    return changed


def test_sft_with_a_trainable_signal_encoder_trains_it_and_resumes_exactly(tmp_path, monkeypatch):
    preset = "tiny"
    run = [*TINY_RUN, "train.steps=3"]   # the tiny sft recipe trains the signal encoder
    full = run_stage(load_config("sft", overrides=[*run, f"train.out='{tmp_path / 'a'}'"], preset=preset),
                     progress=False)
    assert full["losses"][-1] < full["losses"][0]
    assert encoder_changes(tmp_path / "a" / "model", preset) == {"encoder": True, "decoder": False}
    assert torch.load(tmp_path / "a" / "features.pt", weights_only=True)["signal"] == {}   # inputs stay in memory
    config = load_config("sft", overrides=[*run, f"train.out='{tmp_path / 'b'}'"], preset=preset)
    assert interrupted_then_resumed(config, monkeypatch, stop_at=1)["losses"] == full["losses"]
    resumed = HeartcareGPT.from_pretrained(tmp_path / "b" / "model").state_dict()
    for name, value in HeartcareGPT.from_pretrained(tmp_path / "a" / "model").state_dict().items():
        assert torch.equal(resumed[name], value), name


def test_sft_on_the_tiny_gem_preset_trains_the_gem_projector_from_whole_record_tokens(tmp_path):
    out = tmp_path / "gem"
    summary = run_stage(load_config("sft", overrides=[*TINY_RUN, "train.steps=3", f"train.out='{out}'"],
                                    preset="tiny-gem"), progress=False)
    assert summary["losses"][-1] < summary["losses"][0]
    features = torch.load(out / "features.pt", weights_only=True)["signal"]
    assert {tuple(f.shape) for f in features.values()} == {(101, 32)}   # CLS + one token per 100 ms of 10 s
    torch.manual_seed(0)   # the stage's seed: the same initial weights
    start = build_model("tiny-gem")[0].state_dict()
    trained = HeartcareGPT.from_pretrained(out / "model").state_dict()
    assert torch.equal(trained["signal_encoder.patch_embed.weight"], start["signal_encoder.patch_embed.weight"])
    assert not torch.equal(trained["projector.signal_adapter.weight"], start["projector.signal_adapter.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("train_encoder", [False, True])
def test_torchrun_two_processes_give_the_losses_of_one(tmp_path, train_encoder):
    def run(nproc: int) -> list[float]:
        out = tmp_path / f"p{nproc}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "heartfast", "train", "sft", "--preset", "tiny", "--data", "synthetic:10", "--out", str(out),
               "--steps", "2", "--batch-size", "4", "--no-eval", "--quiet",
               "--set", f"model.train_signal_encoder={str(train_encoder).lower()}",
               "--set", "model.signal_warmup_steps=2"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((out / "summary.json").read_text())["losses"]

    one, two = run(1), run(2)
    assert len(one) == 2 and np.allclose(two, one, rtol=1e-4)
