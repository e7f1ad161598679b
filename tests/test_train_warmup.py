"""The signal-encoder warm-up: targets from training items only, the encoder alone changes, deterministically."""
import torch

from heartfast.instruct.dataset import build_items
from heartfast.model.presets import build_model
from heartfast.signal.synthetic import generate_records
from heartfast.train.config import load_config
from heartfast.train.samples import FeatureCache
from heartfast.train.warmup import answer_targets, warm_up_signal_encoder

RECORDS = generate_records(12, seed=3)
ITEMS = list(build_items(RECORDS, tasks=["RhythmClosedQA", "AxisClosedQA", "ComparisonQA"], measurements=None))


def test_answer_targets_come_from_single_record_training_items():
    records, targets, tasks, classes = answer_targets(ITEMS)
    train = [it for it in ITEMS if it.split == "train" and len(it.record_ids) == 1 and it.correct]
    assert tasks == ["AxisClosedQA", "RhythmClosedQA"] and set(records) == {it.record_ids[0] for it in train}
    assert targets.shape == (len(records), 2) and int(targets.max()) < max(classes)
    answer = {(it.record_ids[0], it.task): it.options["ABCD".index(it.correct)] for it in train}
    for a in train:   # same target index exactly where the same answer
        for b in train:
            if a.task == b.task:
                column = tasks.index(a.task)
                same_index = targets[records.index(a.record_ids[0]), column] == \
                    targets[records.index(b.record_ids[0]), column]
                assert bool(same_index) == (answer[(a.record_ids[0], a.task)] == answer[(b.record_ids[0], b.task)])


def _warmed(steps: int):
    torch.manual_seed(0)
    model, _ = build_model("tiny")
    model.train_signal_encoder(True)
    cache = FeatureCache(model, images=False)
    cache.add(RECORDS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    info = warm_up_signal_encoder(model, cache.signal, ITEMS, steps, batch_size=4, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)   # the stage's own random stream is left alone
    return before, model.state_dict(), info


def test_warm_up_trains_only_the_signal_encoder_and_is_deterministic():
    before, after, info = _warmed(4)
    assert info["steps"] == 4 and info["records"] > 0 and info["tasks"] == ["AxisClosedQA", "RhythmClosedQA"]
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("signal_encoder.") for k in changed)
    assert not any("quantizer" in k or "decoder" in k for k in changed)   # the codebook and Beat's decoder stay
    _, again, _ = _warmed(4)
    assert all(torch.equal(again[k], after[k]) for k in after)


def test_the_tiny_sft_recipe_warms_its_trainable_encoder_up():
    config = load_config("sft", preset="tiny")
    assert config.model.train_signal_encoder and config.model.signal_warmup_steps > 0
    assert load_config("sft", preset="tiny-gem").model.signal_warmup_steps == 0
