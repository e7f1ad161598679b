"""Engine parity: greedy output equals transformers `generate` (text) and a naive full-recompute loop
(multimodal), with continuous batching, chunked prefill, prefix caching and preemption in play."""
import numpy as np
import pytest
import torch

from heartfast.engine.engine import Engine, Request
from heartfast.engine.sampling import SamplingParams
from heartfast.model.heartcare import MultimodalBatch, build_input_ids
from heartfast.model.llm import DecoderLM
from heartfast.model.presets import build_model


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("llama")
    model.save_pretrained(path)
    return model, DecoderLM.from_pretrained(path)


def _hf_greedy(model, prompt, n):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, min_new_tokens=n,
                         pad_token_id=0, eos_token_id=None)
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("lookahead", [False, True], ids=["sync", "lookahead"])
@pytest.mark.parametrize("settings", [
    dict(block_size=4, max_batched_tokens=64, max_seqs=8),
    dict(block_size=4, max_batched_tokens=7, max_seqs=3),            # chunked prefill, few slots
    dict(block_size=2, max_batched_tokens=64, max_seqs=8, num_blocks=24),  # forces preemption
])
def test_greedy_matches_transformers_generate(hf_llama, settings, lookahead):
    hf, ours = hf_llama
    rng = np.random.default_rng(1)
    shared = rng.integers(1, 97, 9).tolist()
    prompts = [shared + rng.integers(1, 97, int(n)).tolist() for n in rng.integers(1, 12, 6)]
    prompts.append(rng.integers(1, 97, 20).tolist())
    engine = Engine(ours, **settings, lookahead=lookahead)
    results = engine.generate([Request(f"q{i}", p, params=SamplingParams(max_tokens=8)) for i, p in enumerate(prompts)])
    for prompt, res in zip(prompts, results):
        assert res.token_ids == _hf_greedy(hf, prompt, 8)
        assert res.finish_reason == "length"
    if "num_blocks" not in settings:
        assert engine.stats.cached_prompt_tokens > 0   # the shared 9-token prefix was reused


def test_cache_memory_is_zeroed_before_first_read(hf_llama):
    """The KV cache starts uninitialised (no start-up pass over it); the padded reads of the torch path see
    rows past each length, so any block must be zeroed before a step reads it. NaN stands in for junk."""
    hf, ours = hf_llama
    rng = np.random.default_rng(2)
    prompts = [rng.integers(1, 97, int(n)).tolist() for n in rng.integers(2, 20, 7)]
    engine = Engine(ours, block_size=4, max_batched_tokens=16, max_seqs=4, num_blocks=20)
    for cache in (*engine.cache.k, *engine.cache.v):
        cache.fill_(float("nan"))
    engine.cache.zeroed = 0
    results = engine.generate([Request(f"q{i}", p, params=SamplingParams(max_tokens=6)) for i, p in enumerate(prompts)])
    assert [r.token_ids for r in results] == [_hf_greedy(hf, p, 6) for p in prompts]
    assert engine.blocks.high_water <= engine.cache.zeroed <= min(2 * engine.blocks.high_water, 20)


def test_lookahead_gives_the_same_answers_with_stops_and_mixed_lengths(hf_llama):
    """Decode step t+1 launched before step t's tokens are read: requests that stop on a token (their
    looked-ahead token is discarded), reach max_tokens at different steps, decode greedily with a
    repetition penalty (on the device) or sample on the host with one (seeded) end exactly as without
    lookahead."""
    _, ours = hf_llama
    rng = np.random.default_rng(3)
    prompts = [rng.integers(1, 97, int(n)).tolist() for n in rng.integers(3, 30, 10)]
    plain = Engine(ours, block_size=4, lookahead=False).generate(
        [Request(f"q{i}", p, params=SamplingParams(max_tokens=20)) for i, p in enumerate(prompts)])
    stop = plain[0].token_ids[5]                     # a token the first answer emits mid-way
    requests = [Request(f"q{i}", p, params=SamplingParams(max_tokens=int(rng.integers(2, 20)),
                                                          stop_token_ids=(stop,) if i % 2 == 0 else ()))
                for i, p in enumerate(prompts)]
    requests.append(Request("penalty", prompts[1], params=SamplingParams(max_tokens=12, repetition_penalty=1.3)))
    requests.append(Request("sampled", prompts[2], params=SamplingParams(max_tokens=8, repetition_penalty=1.3,
                                                                         temperature=0.8, seed=1)))
    want = Engine(ours, block_size=4, lookahead=False).generate(requests)
    engine = Engine(ours, block_size=4, lookahead=True)
    got = engine.generate(requests)
    assert [(r.token_ids, r.finish_reason) for r in got] == [(r.token_ids, r.finish_reason) for r in want]
    assert any(r.finish_reason == "stop" for r in got)
    assert engine.stats.lookahead_steps > 0


def test_a_stream_consumed_through_on_result_keeps_nothing_for_a_return_list(hf_llama):
    """collect=False (what answer_items uses): every answer reaches on_result, the same as a collected run,
    none is kept, and the engine's counters still count them."""
    _, ours = hf_llama
    requests = [Request(str(i), [7 + i, 3, 9], params=SamplingParams(max_tokens=3 + i % 4)) for i in range(7)]
    want = {r.id: r.token_ids for r in Engine(ours, block_size=4, max_seqs=3).generate(requests)}
    engine, got = Engine(ours, block_size=4, max_seqs=3), {}
    assert engine.generate(iter(requests), on_result=lambda r: got.update({r.id: r.token_ids}), collect=False) == []
    assert got == want and engine.stats.requests == 7
    assert engine.stats.output_tokens == sum(len(t) for t in want.values())


def test_lookahead_runs_while_a_stream_still_has_requests_waiting(hf_llama):
    """A streamed bench keeps requests waiting all run long; with every slot taken none could be admitted
    anyway, so decode steps are looked ahead then too (not only once the stream is drained), and the
    answers are those of the plain loop."""
    _, ours = hf_llama
    rng = np.random.default_rng(5)
    prompts = [rng.integers(1, 97, int(rng.integers(3, 20))).tolist() for _ in range(9)]
    stop = Engine(ours, block_size=4).generate([Request("p", prompts[0], params=SamplingParams(max_tokens=6))])
    requests = [Request(f"q{i}", p, params=SamplingParams(max_tokens=int(rng.integers(3, 12)),   # some stop early:
                                                          stop_token_ids=(stop[0].token_ids[2],)))   # their slot is
                for i, p in enumerate(prompts)]                                       # refilled from the queue
    want = Engine(ours, block_size=4, max_seqs=3, lookahead=False).generate(requests)
    engine = Engine(ours, block_size=4, max_seqs=3, lookahead=True)
    before_last = []

    def stream():
        for i, r in enumerate(requests):
            if i == len(requests) - 1:
                before_last.append(engine.stats.lookahead_steps)
            yield r

    got = engine.generate(stream())
    assert [(r.token_ids, r.finish_reason) for r in got] == [(r.token_ids, r.finish_reason) for r in want]
    assert before_last[0] > 0 and any(r.finish_reason == "stop" for r in got)


def test_penalised_greedy_decoding_stays_on_the_device(hf_llama):
    """Greedy with a repetition penalty (the papers' evaluation) picks tokens on the device, so steps are
    looked ahead, with the answers of the plain loop."""
    _, ours = hf_llama
    rng = np.random.default_rng(7)
    requests = [Request(f"q{i}", rng.integers(1, 97, int(rng.integers(3, 25))).tolist(),
                        params=SamplingParams(max_tokens=int(rng.integers(4, 16)), repetition_penalty=1.1))
                for i in range(6)]
    want = Engine(ours, block_size=4, lookahead=False).generate(requests)
    engine = Engine(ours, block_size=4, lookahead=True)
    assert [r.token_ids for r in engine.generate(requests)] == [r.token_ids for r in want]
    assert engine.stats.lookahead_steps > 0 and not engine.sampler.seen._rows   # every row handed back


def test_seeded_sampling_with_a_penalty_follows_a_plain_loop(hf_llama):
    """Host sampling marks each drawn token for the repetition penalty: a seeded request equals a loop of
    transformers' forward, its penalty processor over prompt + answer, temperature, softmax and the same
    generator's multinomial draws."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    hf, ours = hf_llama
    prompt, n = [5, 9, 11, 9, 5, 30, 2], 16
    params = SamplingParams(max_tokens=n, temperature=0.05, repetition_penalty=10.0, seed=4)
    got = Engine(ours, block_size=4).generate([Request("s", prompt, params=params)])[0].token_ids
    ids, gen = list(prompt), torch.Generator().manual_seed(4)
    with torch.no_grad():
        for _ in range(n):
            logits = hf(torch.tensor([ids])).logits[:, -1].float()
            logits = RepetitionPenaltyLogitsProcessor(10.0)(torch.tensor([ids]), logits)
            ids.append(int(torch.multinomial((logits / 0.05).softmax(-1)[0], 1, generator=gen)))
    assert got == ids[len(prompt):]


def test_repetition_penalty_matches_transformers(hf_llama):
    hf, ours = hf_llama
    prompt = list(range(5, 17))
    res = Engine(ours, block_size=4).generate([Request("a", prompt, params=SamplingParams(max_tokens=10, repetition_penalty=1.1))])
    ref = hf.generate(torch.tensor([prompt]), max_new_tokens=10, min_new_tokens=10, do_sample=False,
                      repetition_penalty=1.1, pad_token_id=0, eos_token_id=None)[0, len(prompt):].tolist()
    assert res[0].token_ids == ref


@pytest.fixture(scope="module")
def tiny_heartcare():
    torch.manual_seed(0)
    model, tokenizer = build_model("tiny")
    return model.eval(), tokenizer


def _naive_greedy(model, tokenizer, prompt, signal, image, fs, n):
    sig_feats = model.signal_features(torch.as_tensor(signal)[None], fs)
    img_feats = model.image_features(image[None])
    ids = build_input_ids(tokenizer, prompt, model.spans, signal_tokens=[sig_feats.shape[1]],
                          image_tokens=[img_feats.shape[1] * model.projector.image_tokens])
    out = []
    for _ in range(n):
        batch = MultimodalBatch(input_ids=torch.tensor([ids + out]), signal_features=sig_feats, image_features=img_feats)
        with torch.no_grad():
            logits = model(batch).logits
        out.append(int(logits[0, -1].argmax()))
    return out


def test_multimodal_greedy_matches_naive_loop_and_shares_ecg_prefix(tiny_heartcare):
    model, tokenizer = tiny_heartcare
    rng = np.random.default_rng(0)
    ecgs = [rng.standard_normal((12, 2500)).astype(np.float32) * 0.3 for _ in range(2)]
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    size = model.vision.config.image_size
    images = [torch.nn.functional.interpolate(im[None], size=(size, size))[0] for im in images]
    questions = ["What is the rhythm?", "Is the axis normal?", "Any ST elevation?"]
    requests, expected = [], []
    for e in range(2):
        for q in questions:
            prompt = f"<image> <signal> {q}"
            requests.append(Request(f"e{e}-{q}", prompt, signals=[ecgs[e]], signal_fs=250.0, images=[images[e]],
                                    keys=[f"ecg{e}", f"ecg{e}"], params=SamplingParams(max_tokens=5)))
            expected.append(_naive_greedy(model, tokenizer, prompt, ecgs[e], images[e], 250.0, 5))
    engine = Engine(model, tokenizer, block_size=4, max_batched_tokens=48)
    results = engine.generate(requests)
    assert [r.token_ids for r in results] == expected
    assert engine.stats.cached_prompt_tokens > 0 and engine.stats.ecgs == 2


def test_rendered_uint8_pictures_are_encoded_as_in_training(tiny_heartcare):
    """The renderer writes uint8 pictures and training encodes them as they are (the tower scales 0-255);
    the engine must not turn them into 0-255 floats first: same features, and the same answer as the
    picture given in [0, 1]."""
    model, tokenizer = tiny_heartcare
    size = model.vision.config.image_size
    picture = (torch.rand(3, size, size, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    features = Engine(model, tokenizer)._encode_new("image", {"ecg": picture}, {})["ecg"]
    torch.testing.assert_close(features, model.image_features(picture[None])[0], rtol=0, atol=0)

    def answer(image):
        request = Request("r", "<image> What is the rhythm?", images=[image], params=SamplingParams(max_tokens=12))
        return Engine(model, tokenizer).generate([request])[0].token_ids

    assert answer(picture) == answer(picture.float() / 255)


def test_bad_requests_are_named(hf_llama):
    _, ours = hf_llama
    engine = Engine(ours, block_size=4)
    with pytest.raises(ValueError, match="r9"):
        engine.generate([Request("r9", list(range(300)))])
    with pytest.raises(ValueError, match="text-only"):
        engine.generate([Request("x", [1, 2], signals=[np.zeros((12, 10))])])


def test_a_stream_is_pulled_as_room_frees_up_and_an_error_mid_run_frees_the_cache(hf_llama):
    """generate() reads an iterable lazily (answers reach on_result as they finish, in the order of the
    requests in the returned list), and a request source that fails mid-run hands every KV block back."""
    _, ours = hf_llama
    engine = Engine(ours, block_size=4, num_blocks=32, max_seqs=2)
    free = engine.blocks.num_available
    prompts = [[5 + i, 9, 11, 2 + i] for i in range(6)]
    pulled, finished = [], []

    def stream(fail_at: int | None = None):
        for i, p in enumerate(prompts):
            if i == fail_at:
                raise RuntimeError("the record store failed")
            pulled.append(i)
            yield Request(str(i), p, params=SamplingParams(max_tokens=8 - i))

    out = engine.generate(stream(), on_result=lambda r: finished.append(r.id))
    assert [r.id for r in out] == [str(i) for i in range(6)] and sorted(finished) == sorted(r.id for r in out)
    assert finished.index("1") < finished.index("0")      # handed over when finished: the shorter answer first
    assert [r.token_ids for r in out] == [r.token_ids for r in engine.generate(
        [Request(str(i), p, params=SamplingParams(max_tokens=8 - i)) for i, p in enumerate(prompts)])]
    with pytest.raises(RuntimeError, match="record store"):
        engine.generate(stream(fail_at=4))
    assert engine.blocks.num_available == free


def test_encoder_features_are_reused_within_a_bounded_cache(tiny_heartcare, monkeypatch):
    """Questions on one ECG encode it once; a run over more ECGs than the feature cache holds keeps only the
    most recent ones and gives the same answers (an evicted ECG asked about again is encoded again)."""
    model, tokenizer = tiny_heartcare
    rng = np.random.default_rng(1)
    ecgs = [rng.standard_normal((12, 2500)).astype(np.float32) * 0.3 for _ in range(5)]
    order = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 0]   # ECG 0 comes back after four others
    requests = [Request(f"r{i}", f"<signal> Question {i}?", signals=[ecgs[e]], signal_fs=250.0, keys=[f"ecg{e}"],
                        params=SamplingParams(max_tokens=3)) for i, e in enumerate(order)]
    encoded = []
    original = type(model).signal_features

    def counting(self, signals, fs):
        encoded.append(len(signals))
        return original(self, signals, fs)

    monkeypatch.setattr(type(model), "signal_features", counting)
    roomy = Engine(model, tokenizer, block_size=4, max_seqs=2)
    expected = [r.token_ids for r in roomy.generate(requests)]
    assert sum(encoded) == 5                       # every ECG once, ECG 0's return included
    encoded.clear()
    tight = Engine(model, tokenizer, block_size=4, max_seqs=2, feature_cache_size=2)
    assert [r.token_ids for r in tight.generate(requests)] == expected
    assert len(tight._features) <= 2 and sum(encoded) == 6   # ECG 0 was evicted and encoded again
