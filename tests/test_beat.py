"""Beat tokenizer: shapes, windows from the right, lead padding, quantizer gradients and EMA, save/load."""
from __future__ import annotations

import json
import math

import pytest
import torch

from heartfast.model.beat import BeatConfig, BeatTokenizer, normalise
from heartfast.model.quantizer import ResidualVQ, rotate_onto


@pytest.fixture
def tiny() -> BeatTokenizer:
    return BeatTokenizer(BeatConfig.preset("tiny")).eval()


def test_presets_follow_the_paper():
    four, two = BeatConfig.preset("beat-4s"), BeatConfig.preset("beat-2s")
    assert (four.window_samples, four.queries, four.codebook_size, four.levels, four.patches) == (1000, 20, 512, 2, 40)
    assert (two.window_samples, two.queries, two.codebook_size, two.levels) == (500, 10, 256, 2)
    assert (four.dim, four.layers, four.heads, four.head_dim, four.ema_decay) == (128, 6, 8, 64, 0.8)
    with pytest.raises(ValueError, match="unknown Beat preset"):
        BeatConfig.preset("beat-9s")


def test_encode_cuts_windows_from_the_right(tiny):
    from heartfast.signal.quality import clean

    c = tiny.config
    signals = torch.randn(2, 12, 2 * c.window_samples + 37)
    windows = tiny.windows(signals, 250)
    assert windows.shape == (2, 3, 12, c.window_samples)
    cleaned = clean(signals, 250)
    torch.testing.assert_close(windows[:, -1], normalise(cleaned[..., -c.window_samples:]))
    torch.testing.assert_close(windows[:, 1], normalise(cleaned[..., 37:37 + c.window_samples]))
    first = torch.cat([torch.zeros(2, 12, c.window_samples - 37), cleaned[..., :37]], dim=-1)
    torch.testing.assert_close(windows[:, 0], normalise(first))     # the first window is left-padded
    codes = tiny.encode(signals, 250)
    assert codes.shape == (2, 3, c.queries, c.levels) and codes.dtype == torch.int64
    assert int(codes.max()) < c.codebook_size


def test_encode_resamples_other_rates(tiny):
    signals = torch.randn(1, 12, 1000)          # 2 s at 500 Hz -> 500 samples at 250 Hz -> 2 tiny windows
    assert tiny.windows(signals, 500).shape == (1, 2, 12, tiny.config.window_samples)


def test_fewer_leads_are_zero_padded(tiny):
    eight = torch.randn(8, 3 * tiny.config.window_samples)
    windows = tiny.windows(eight, 250)
    assert windows.shape[:3] == (1, 3, 12)
    assert torch.count_nonzero(windows[:, :, 8:]) == 0
    padded = torch.cat([eight, torch.zeros(4, eight.shape[1])])
    assert torch.equal(tiny.encode(eight, 250), tiny.encode(padded, 250))
    with pytest.raises(ValueError, match="leads"):
        tiny.windows(torch.randn(13, 100), 250)


def test_latents_and_decode_use_the_codes(tiny):
    c = tiny.config
    signals = torch.randn(3, 12, 2 * c.window_samples)
    codes, latents = tiny.encode(signals, 250), tiny.latents(signals, 250)
    assert latents.shape == (3, 2 * c.queries, c.dim)
    book = tiny.quantizer.codebook[0]
    torch.testing.assert_close(latents[1, c.queries + 2], book[codes[1, 1, 2]].sum(0))
    assert tiny.decode(codes).shape == (3, 12, 2 * c.window_samples)


def test_forward_loss_is_the_papers_weighting():
    model = BeatTokenizer(BeatConfig.preset("tiny"))
    c = model.config
    out = model(torch.randn(4, 12, c.window_samples), torch.randn(4, 12, c.predict_samples))
    p = out.parts
    expected = p["recon"] + 0.5 * p["pred"] + 0.25 * (1.0 * p["commitment"] + 0.3 * p["diversity"])
    torch.testing.assert_close(out.loss, expected)
    assert out.reconstruction.shape == (4, 12, c.window_samples) and out.prediction.shape == (4, 12, c.predict_samples)


def test_straight_through_passes_gradient_unchanged():
    vq = ResidualVQ(dim=8, codebook_size=11, levels=2).eval()
    z = torch.randn(13, 8, requires_grad=True)
    g = torch.randn(13, 8)
    out = vq(z)
    (out.quantized * g).sum().backward()
    torch.testing.assert_close(z.grad, g)
    torch.testing.assert_close(out.quantized, vq.lookup(out.indices).sum(1))


def test_rotation_trick_value_is_the_code_and_gradient_is_rotated():
    e = torch.randn(6, 5, requires_grad=True)
    q = torch.randn(6, 5)
    out = rotate_onto(e, q)
    torch.testing.assert_close(out, q)
    out.sum().backward()
    assert not torch.allclose(e.grad, torch.ones_like(e))
    vq = ResidualVQ(dim=8, codebook_size=11, levels=2, rotation_trick=True).eval()
    z = torch.randn(9, 8)
    torch.testing.assert_close(vq(z).quantized, vq.lookup(vq(z).indices).sum(1))


def test_dead_codes_restart_on_batch_vectors():
    vq = ResidualVQ(dim=6, codebook_size=9, levels=1, shared=False, decay=0.8, dead_code_threshold=0.5).train()
    vq.initialised.fill_(True)
    vq.codebook.copy_(torch.cat([torch.zeros(1, 6), 100 + torch.randn(8, 6)])[None])
    vq.ema_count.copy_(torch.tensor([[1.0] + [0.5] * 8]))   # unused codes fall to 0.4 < 0.5
    vq.ema_sum.copy_(vq.codebook * vq.ema_count[..., None])
    z = 0.1 * torch.randn(40, 6)
    vq(z)
    moved = vq.codebook[0, 1:]
    assert (moved[:, None] - z[None]).abs().amax(-1).min(dim=1).values.max() < 1e-6  # each is a batch vector
    torch.testing.assert_close(vq.ema_count[0, 1:], torch.ones(8))
    ema_mean = 0.2 * z.sum(0) / (0.8 * 1.0 + 0.2 * 40)                 # the used code: EMA sum / EMA count
    torch.testing.assert_close(vq.codebook[0, 0], ema_mean, atol=1e-5, rtol=1e-3)


def test_ema_codebook_moves_to_the_mean_of_its_vectors():
    vq = ResidualVQ(dim=4, codebook_size=2, levels=1, decay=0.0, dead_code_threshold=0.0).train()
    vq.initialised.fill_(True)
    vq.codebook.copy_(torch.tensor([[[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]]))
    z = torch.tensor([[2.0, 1, 0, 0], [4.0, -1, 0, 0], [-3.0, 0, 2, 0]])
    vq(z)
    torch.testing.assert_close(vq.codebook[0], torch.tensor([[3.0, 0, 0, 0], [-3.0, 0, 2, 0]]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(vq.ema_count[0], torch.tensor([2.0, 1.0]))


def test_save_and_load_round_trip(tmp_path):
    model = BeatTokenizer(BeatConfig.preset("tiny", shared_codebook=False, queries=5, predict_samples=100))
    model.train()(torch.randn(4, 12, 250), torch.randn(4, 12, 100))   # moves the codebooks off their init
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["queries"] == 5
    loaded = BeatTokenizer.from_pretrained(tmp_path)
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    signals = torch.randn(2, 12, 600)
    assert torch.equal(model.encode(signals), loaded.encode(signals))
    with pytest.raises(FileNotFoundError, match="config.json"):
        BeatTokenizer.from_pretrained(tmp_path / "missing")


def test_configs_saved_before_the_local_start_load_without_it(tmp_path):
    model = BeatTokenizer(BeatConfig.preset("tiny", local_start=False))
    model.save_pretrained(tmp_path)
    fields = json.loads((tmp_path / "config.json").read_text())
    del fields["local_start"]
    (tmp_path / "config.json").write_text(json.dumps(fields))
    assert BeatTokenizer.from_pretrained(tmp_path).config.local_start is False
    assert BeatConfig.preset("tiny").local_start   # new models start local


def test_tokenizer_runs_the_triton_quantizer_under_the_interpreter(monkeypatch, tiny):
    signals = torch.randn(2, 12, 700)
    reference = tiny.encode(signals)
    monkeypatch.setenv("HEARTFAST_BACKEND", "triton")
    assert torch.equal(tiny.encode(signals), reference)
    assert math.isfinite(float(tiny.latents(signals).sum()))
