"""What serving shows the model is what training showed it: for the same bench items, the engine's prompt
(records from the record store, pictures from the item server, its own encoder calls and projection)
equals the trainer's (FeatureCache, item_sample, the model's embed) token for token and embedding for
embedding, for signal, image and two-record questions, with the signal encoder frozen or trained, for
Heartcare's layout (Beat, pooled SigLIP) and GEM's (time-series encoder, CLIP patches)."""
import pytest
import torch

from heartfast.engine.batch import ItemServer, RecordStore
from heartfast.engine.engine import Engine
from heartfast.engine.sampling import SamplingParams
from heartfast.evaluate.bench import bench_items
from heartfast.io.sources import list_records
from heartfast.model.presets import build_model
from heartfast.train.packing import pack
from heartfast.train.samples import FeatureCache, item_sample

SOURCE = "synthetic:3:7"


@pytest.mark.parametrize("preset, trained_encoder", [("tiny", False), ("tiny", True), ("tiny-gem", False)],
                         ids=["beat-frozen", "beat-trained", "gem"])
def test_the_engine_builds_the_prompt_training_built(preset, trained_encoder):
    torch.manual_seed(0)
    model, tokenizer = build_model(preset)
    model.train_signal_encoder(trained_encoder)
    model.eval()
    records = [ref.load() for ref in list_records(SOURCE)]
    pairs = bench_items(records, measurements=None)
    picked = {}
    for subset, item in pairs:   # one item per subset and input layout
        picked.setdefault((subset, tuple(item.inputs)), item)
    assert {subset for subset, _ in picked} == {"Bench-S", "Bench-I", "Bench-C", "Grounding"}
    cache = FeatureCache(model, images=True)
    cache.add(records)
    engine = Engine(model, tokenizer)
    server, store = ItemServer(engine, images=True, params=SamplingParams()), RecordStore(SOURCE)
    for item in picked.values():
        sample = item_sample(item, model, tokenizer, cache, with_answer=False)
        with torch.no_grad():
            trained_on = model.embed(pack([sample]))[0]
        request = server.request(item, {rid: store.get(rid) for rid in item.record_ids})
        seq, served = engine._prepare([request], 0)[0]
        assert seq.prompt_ids == sample.input_ids, item.id
        torch.testing.assert_close(served, trained_on, rtol=1e-5, atol=1e-5, msg=item.id)
