"""HeartcareGPT assembly: presets, placeholder filling, answer-only loss, save/load, discrete mode, encoders."""
from __future__ import annotations

import pytest
import torch
import transformers

from heartfast.model import vocab
from heartfast.model.dspa import DualStreamProjector, ProjectorConfig
from heartfast.model.heartcare import HeartcareGPT, MultimodalBatch, build_input_ids
from heartfast.model.llm import DecoderLM
from heartfast.model.presets import build_model, parameter_counts
from heartfast.model.timeseries import TimeSeriesConfig, TimeSeriesEncoder
from heartfast.model.vision import ImageEncoder


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tokenizer = build_model("tiny")
    return model.eval(), tokenizer


def sample_batch(model, tokenizer) -> tuple[MultimodalBatch, list[list[int]]]:
    """Two samples: image + signal + question; a two-signal comparison. Three ECGs, one image in all."""
    n_sig = model.signal_features(torch.randn(1, 12, 500), 250).shape[1]
    first = build_input_ids(tokenizer, "<image><signal> Rhythm? A", model.spans, signal_tokens=n_sig,
                            image_tokens=12 * 2)
    second = build_input_ids(tokenizer, "Compare <signal> with <signal>: B", model.spans, signal_tokens=n_sig)
    length = max(len(first), len(second))
    ids = torch.full((2, length), tokenizer.pad_token_id)
    labels = torch.full((2, length), -100)
    for row, seq in enumerate((first, second)):
        ids[row, :len(seq)] = torch.tensor(seq)
        labels[row, len(seq) - 1] = seq[-1]  # the answer letter only
    batch = MultimodalBatch(input_ids=ids, labels=labels, signals=torch.randn(3, 12, 500), signal_fs=250,
                            images=torch.rand(1, 12, 3, 24, 40))
    return batch, [first, second]


def test_tiny_parameter_count_matches_numel(tiny):
    model, _ = tiny
    counts = parameter_counts("tiny")
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["llm"] == sum(p.numel() for p in model.llm.parameters())


def test_placeholders_hold_projected_features_and_text_is_untouched(tiny):
    model, tokenizer = tiny
    batch, _ = sample_batch(model, tokenizer)
    with torch.no_grad():
        embeds = model.embed(batch)
        plain = model.llm.embed_tokens(batch.input_ids)
        signal = model.projector.project_signal(model.signal_features(batch.signals, 250)).reshape(-1, 256)
        image = model.projector.project_image(model.image_features(batch.images)).reshape(-1, 256)
    flat_ids, flat = batch.input_ids.reshape(-1), embeds.reshape(-1, 256)
    is_sig = flat_ids == model.config.token_ids[vocab.SIGNAL]
    is_img = flat_ids == model.config.token_ids[vocab.IMAGE]
    torch.testing.assert_close(flat[is_sig], signal)
    torch.testing.assert_close(flat[is_img], image)
    text = ~(is_sig | is_img)
    torch.testing.assert_close(flat[text], plain.reshape(-1, 256)[text])


def test_loss_counts_answer_tokens_only(tiny):
    model, tokenizer = tiny
    batch, seqs = sample_batch(model, tokenizer)
    out = model(batch)
    assert out.tokens == 2
    logits = out.logits
    manual = sum(torch.nn.functional.cross_entropy(logits[row, len(seq) - 2][None], torch.tensor([seq[-1]]))
                 for row, seq in enumerate(seqs)) / 2
    torch.testing.assert_close(out.loss, manual)


def test_projector_gets_gradients_when_llm_frozen(tiny):
    model, tokenizer = tiny
    batch, _ = sample_batch(model, tokenizer)
    model.llm.requires_grad_(False)
    try:
        model(batch).loss.backward()
        grads = {n: p.grad for n, p in model.projector.named_parameters()}
        assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
        assert all(p.grad is None for p in model.signal_encoder.parameters())
    finally:
        model.llm.requires_grad_(True)
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("preset", ["tiny", "tiny-gem"])
def test_a_trainable_signal_encoder_gives_the_same_features_and_gets_gradients(preset):
    torch.manual_seed(0)
    model, tokenizer = build_model(preset)
    signals = torch.randn(3, 12, 2500)
    frozen = model.signal_features(signals, 250)
    inputs = model.prepare_signals(signals, 250)
    assert model.signal_length(inputs[0]) == frozen.shape[1]
    model.train_signal_encoder()
    model.train()   # the encoder stays trainable (and in eval mode: Beat's codebooks do not move)
    path = {id(p) for p in model.signal_encoder_parameters()}
    assert all(p.requires_grad == (id(p) in path) for p in model.signal_encoder.parameters())
    assert not any(p.requires_grad for p in model.vision.parameters()) and not model.signal_encoder.training
    trained = model.encode_signal_list(list(inputs))
    assert torch.equal(trained.detach(), frozen.reshape(-1, frozen.shape[-1]))   # straight-through: same values
    trained.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.signal_encoder_parameters())
    ids = build_input_ids(tokenizer, "<signal> Rhythm? A", model.spans, signal_tokens=frozen.shape[1])
    batch = MultimodalBatch(input_ids=torch.tensor([ids]), signal_inputs=[inputs[0]])
    with torch.no_grad():
        torch.testing.assert_close(model.embed(batch),
                                   model.embed(MultimodalBatch(input_ids=batch.input_ids, signal_features=frozen[:1])))
    model.train_signal_encoder(False)
    assert not any(p.requires_grad for p in model.signal_encoder.parameters())


def test_save_and_load_round_trip(tiny, tmp_path):
    model, tokenizer = tiny
    batch, _ = sample_batch(model, tokenizer)
    model.save_pretrained(tmp_path, tokenizer)
    loaded = HeartcareGPT.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits)
    reloaded_tokenizer = vocab.load_text_tokenizer(tmp_path)
    assert reloaded_tokenizer.convert_tokens_to_ids(vocab.SIGNAL) == model.config.token_ids[vocab.SIGNAL]


def test_mismatched_placeholders_rejected(tiny):
    model, tokenizer = tiny
    batch, _ = sample_batch(model, tokenizer)
    batch.signals = batch.signals[:2]
    with pytest.raises(ValueError, match="signal feature rows"):
        model.embed(batch)


def test_discrete_mode_spells_codes_as_words():
    model, tokenizer = build_model("tiny", signal_mode="discrete")
    codes = model.signal_codes(torch.randn(1, 12, 500), 250)[0]
    ids = build_input_ids(tokenizer, "ECG: <signal> ok", model.spans, signal_codes=[codes])
    first_code = model.config.token_ids["<|ecg_0|>"]
    spelled = [i - first_code for i in ids if first_code <= i < first_code + 16]
    assert spelled == codes[..., 0].reshape(-1).tolist()
    assert tokenizer.convert_ids_to_tokens(first_code + 5) == "<|ecg_5|>"
    logits = model(MultimodalBatch(input_ids=torch.tensor([ids]))).logits
    assert logits.shape == (1, len(ids), len(tokenizer))


def test_vocabulary_extension_from_checkpoint_tokenizer(tmp_path):
    """Markers added to a saved tokenizer (loaded with AutoTokenizer, local only); new rows = mean rows."""
    vocab.byte_tokenizer().save_pretrained(tmp_path)
    tokenizer = vocab.load_text_tokenizer(tmp_path)
    config = transformers.LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path)
    lm = DecoderLM.from_pretrained(tmp_path)
    mean = lm.embed_tokens.weight.mean(0)
    ids = vocab.extend_vocabulary(lm, tokenizer, list(vocab.MARKERS))
    assert sorted(ids.values()) == list(range(259, 265)) and lm.config.vocab_size == 265
    torch.testing.assert_close(lm.embed_tokens.weight[259:], mean.expand(6, -1))
    assert tokenizer("a<signal>")["input_ids"][-1] == ids[vocab.SIGNAL]


@pytest.mark.parametrize("tower", ["siglip", "clip"])
def test_vision_towers_from_local_dirs(tower, tmp_path):
    classes = {"siglip": (transformers.SiglipVisionConfig, transformers.SiglipVisionModel),
               "clip": (transformers.CLIPVisionConfig, transformers.CLIPVisionModel)}
    config_cls, model_cls = classes[tower]
    reference = model_cls(config_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=32, patch_size=8)).eval()
    reference.save_pretrained(tmp_path)
    pooled = ImageEncoder.from_pretrained(tmp_path, mode="pooled").eval()
    patches = ImageEncoder.from_pretrained(tmp_path, mode="patches", select_layer=-2).eval()
    assert pooled.config.tower == tower
    crops = torch.rand(2, 12, 3, 32, 32)
    with torch.no_grad():
        out = pooled(crops)
        assert out.shape == (2, 12, 32)
        pixels = pooled.preprocess(crops[1, 4][None])
        torch.testing.assert_close(out[1, 4], reference(pixel_values=pixels).pooler_output[0])
        whole = patches(torch.rand(3, 3, 50, 70))
        assert whole.shape == (3, 16, 32)  # (32 / 8)^2 patches, CLS dropped for CLIP


def test_timeseries_encoder_tokens():
    encoder = TimeSeriesEncoder(TimeSeriesConfig.preset("tiny"))
    signals = encoder.prepare(torch.randn(2, 8, 6100))  # 8 leads padded to 12; 6100 samples cut to 5000
    assert signals.shape == (2, 12, 5000) and torch.all(signals[:, 8:] == 0)
    short = encoder.prepare(torch.randn(12, 1000))
    assert torch.all(short[:, :, 1000:] == 0)
    assert encoder(signals).shape == (2, 101, 32)


def test_gem_projector_shares_the_mlp():
    projector = DualStreamProjector(ProjectorConfig(kind="gem", signal_dim=24, image_dim=16, hidden=40, image_tokens=1))
    signal, image = torch.randn(3, 24), torch.randn(5, 16)
    mlp = torch.nn.Sequential(projector.mlp_fc1, torch.nn.GELU(), projector.mlp_fc2)
    torch.testing.assert_close(projector.project_signal(signal), mlp(projector.signal_adapter(signal)))
    torch.testing.assert_close(projector.project_image(image[None])[0], mlp(image))
    embeds = torch.zeros(10, 40)
    rows = torch.randperm(10)
    out = projector.write(embeds, signal, rows[:3], image, rows[3:8])
    torch.testing.assert_close(out[rows[:3]], projector.project_signal(signal))
    assert torch.all(out[rows[8:]] == 0)


def test_lora_model_saves_and_loads(tmp_path):
    from heartfast.model.lora import LoraConfig

    model, tokenizer = build_model("tiny")
    model.add_lora(LoraConfig(r=4, alpha=8, dropout=0.0))
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"llm", "projector"}
    assert all("lora_" in n for n, p in model.llm.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    batch, _ = sample_batch(model.eval(), tokenizer)
    model.save_pretrained(tmp_path, tokenizer)
    loaded = HeartcareGPT.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits)


def test_packed_batch_gives_the_losses_of_separate_rows(tiny):
    """Two samples packed into one row (cu_seqlens, restarted positions) = the same two samples padded."""
    model, tokenizer = tiny
    batch, seqs = sample_batch(model, tokenizer)
    packed_ids = torch.tensor([seqs[0] + seqs[1]])
    packed_labels = torch.full_like(packed_ids, -100)
    packed_labels[0, len(seqs[0]) - 1] = seqs[0][-1]
    packed_labels[0, -1] = seqs[1][-1]
    positions = torch.cat([torch.arange(len(seqs[0])), torch.arange(len(seqs[1]))])[None]
    cu = torch.tensor([0, len(seqs[0]), len(seqs[0]) + len(seqs[1])], dtype=torch.int32)
    packed = MultimodalBatch(input_ids=packed_ids, labels=packed_labels, positions=positions, cu_seqlens=cu,
                             signals=batch.signals, signal_fs=250, images=batch.images)
    with torch.no_grad():
        separate, together = model(batch, reduction="sum"), model(packed, reduction="sum")
    assert together.tokens == separate.tokens == 2
    torch.testing.assert_close(together.loss, separate.loss, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("tower", ["siglip", "clip"])
def test_vision_tower_from_a_full_two_tower_checkpoint(tower, tmp_path):
    """Published SigLIP / CLIP checkpoints hold both towers; the vision half is what loads."""
    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    if tower == "siglip":
        config = transformers.SiglipConfig(text_config=dict(shape, vocab_size=50),
                                           vision_config=dict(shape, image_size=32, patch_size=8))
        full = transformers.SiglipModel(config).eval()
    else:
        config = transformers.CLIPConfig(text_config=dict(shape, vocab_size=50), projection_dim=16,
                                         vision_config=dict(shape, image_size=32, patch_size=8))
        full = transformers.CLIPModel(config).eval()
    full.save_pretrained(tmp_path)
    encoder = ImageEncoder.from_pretrained(tmp_path, mode="pooled").eval()
    pictures = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = full.vision_model(pixel_values=encoder.preprocess(pictures)).pooler_output
        torch.testing.assert_close(encoder(pictures)[:, 0], expected)


def test_image_encoder_reads_renderer_uint8_like_unit_floats():
    from heartfast.model.vision import ImageEncoder, tiny_vision_config

    encoder = ImageEncoder(tiny_vision_config()).eval()
    pictures = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    torch.testing.assert_close(encoder(pictures), encoder(pictures.float() / 255.0))
