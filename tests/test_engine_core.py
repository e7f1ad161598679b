import pytest
import torch

from heartfast.engine.blocks import BlockManager, OutOfBlocks, block_hashes
from heartfast.engine.sampling import Sampler, SamplingParams, SeenTokens, filter_top_k_top_p
from heartfast.engine.scheduler import Scheduler, Sequence


def seq(i, prompt, max_tokens=4):
    return Sequence(f"r{i}", i, list(prompt), SamplingParams(max_tokens=max_tokens), list(prompt))


def test_block_hashes_chain_and_skip_partial_block():
    assert len(block_hashes(list(range(10)), 4)) == 2
    a, b = block_hashes([1, 2, 3, 4, 5, 6, 7, 8], 4), block_hashes([9, 2, 3, 4, 5, 6, 7, 8], 4)
    assert a[0] != b[0] and a[1] != b[1]  # same second block, different parent


def test_prefix_blocks_are_shared_and_refcounted():
    bm = BlockManager(num_blocks=8, block_size=4)
    prompt = list(range(10))
    t1, cached1 = bm.allocate(prompt, len(prompt))
    assert cached1 == 0 and len(t1) == 3
    bm.commit(t1, prompt, 10)
    t2, cached2 = bm.allocate(prompt + [99], 11)
    assert cached2 == 8 and t2[:2] == t1[:2] and t2[2] != t1[2]
    assert bm.refcount[t1[0]] == 2
    bm.release(t1)
    bm.release(t2)
    assert bm.num_available == 8
    t3, cached3 = bm.allocate(prompt, 10)           # still cached after release
    assert cached3 == 8


def test_whole_prompt_cached_still_computes_last_token():
    bm = BlockManager(num_blocks=4, block_size=4)
    prompt = list(range(8))
    t1, _ = bm.allocate(prompt, 8)
    bm.commit(t1, prompt, 8)
    _, cached = bm.allocate(prompt, 8)
    assert cached == 4


def test_eviction_of_cached_blocks_and_out_of_blocks():
    bm = BlockManager(num_blocks=2, block_size=2)
    t, _ = bm.allocate([1, 2, 3, 4], 4)
    bm.commit(t, [1, 2, 3, 4], 4)
    bm.release(t)
    t2, cached = bm.allocate([5, 6, 7, 8], 4)       # evicts both cached blocks
    assert cached == 0 and not bm.cached
    with pytest.raises(OutOfBlocks):
        bm.allocate([9, 9], 2)


def test_scheduler_budget_chunked_prefill_and_decode():
    sched = Scheduler(BlockManager(64, 4), max_batched_tokens=8, max_seqs=4)
    a, b = seq(0, range(12)), seq(1, range(100, 103))
    sched.add(a)
    sched.add(b)
    chunks = sched.schedule()
    assert [(c.seq.key, c.start, c.length) for c in chunks] == [(0, 0, 8)]
    for c in chunks:
        sched.complete(c)
    chunks = sched.schedule()
    assert [(c.seq.key, c.start, c.length) for c in chunks] == [(0, 8, 4), (1, 0, 3)]
    assert all(c.samples for c in chunks)
    for c in chunks:
        sched.complete(c)
        c.seq.append(7)
    chunks = sched.schedule()
    assert [(c.seq.key, c.start, c.length) for c in chunks] == [(0, 12, 1), (1, 3, 1)]


def test_preemption_when_cache_runs_out_then_recompute():
    sched = Scheduler(BlockManager(4, 2), max_batched_tokens=64, max_seqs=4)
    a, b = seq(0, range(4)), seq(1, range(10, 14))
    sched.add(a)
    sched.add(b)
    for c in sched.schedule():
        sched.complete(c)
        c.seq.append(1)
    chunks = sched.schedule()                       # a needs a 3rd block: b is preempted
    assert [c.seq.key for c in chunks] == [0] and sched.preemptions == 1
    assert b.num_computed == 0 and sched.waiting[0] is b and not b.block_table


def test_request_larger_than_cache_is_refused():
    sched = Scheduler(BlockManager(2, 2))
    with pytest.raises(ValueError, match="r0"):
        sched.add(seq(0, range(10)))


def test_repetition_penalty_matches_transformers_as_histories_grow_and_rows_are_reused():
    """SeenTokens against transformers' processor over the whole history: rows filled from the histories on
    first use, each step's tokens marked on the device, an unpenalised request left alone, and a released
    row taken by a new request without its predecessor's tokens."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    def reference(logits, histories, penalties):
        rows = [RepetitionPenaltyLogitsProcessor(p)(torch.tensor([h]), logits[i:i + 1].clone()) if p != 1.0
                else logits[i:i + 1] for i, (h, p) in enumerate(zip(histories, penalties))]
        return torch.cat(rows)

    gen = torch.Generator().manual_seed(0)
    seen = SeenTokens()
    histories = {0: [1, 3, 3], 1: [0, 10], 2: [4, 5]}
    penalties = {0: 1.3, 1: 1.1, 2: 1.0}
    for step in range(4):
        if step == 2:                                  # request 0 ends; request 7 takes its row
            freed = seen._rows[0]
            seen.release(0)
            del histories[0]
            histories[7], penalties[7] = [2], 1.2
        keys = list(histories)
        logits = torch.randn(len(keys), 11, generator=gen)
        ours, marks = seen.penalize(logits, keys, [histories[k] for k in keys], [penalties[k] for k in keys])
        torch.testing.assert_close(ours, reference(logits, [histories[k] for k in keys], [penalties[k] for k in keys]),
                                   rtol=0, atol=0)
        tokens = torch.randint(0, 11, (len(keys),), generator=gen)
        seen.mark(marks, tokens)
        for k, t in zip(keys, tokens.tolist()):
            histories[k].append(t)
    assert seen._rows[7] == freed and sorted(seen._rows) == [1, 7]    # key 2 (no penalty) never took a row


def test_top_k_top_p_match_transformers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(3, 50)
    ours = filter_top_k_top_p(logits, torch.tensor([5, 0, 5]), torch.tensor([1.0, 0.8, 0.8]))
    assert torch.equal(torch.isinf(ours[0]), torch.isinf(TopKLogitsWarper(5)(None, logits[:1].clone())[0]))
    assert torch.equal(torch.isinf(ours[1]), torch.isinf(TopPLogitsWarper(0.8)(None, logits[1:2].clone())[0]))
    both = TopPLogitsWarper(0.8)(None, TopKLogitsWarper(5)(None, logits[2:].clone()))[0]
    assert torch.equal(torch.isinf(ours[2]), torch.isinf(both))


def test_sampler_greedy_and_seeded():
    logits = torch.randn(2, 30)
    sampler = Sampler()
    greedy = [SamplingParams(), SamplingParams()]
    assert sampler(logits, greedy, [0, 1]) == logits.argmax(-1).tolist()
    hot = [SamplingParams(temperature=1.0, seed=3)] * 2
    first = Sampler()(logits, hot, [0, 1])
    assert first == Sampler()(logits, hot, [0, 1])
    draws = {tuple(Sampler()(logits[:1], [SamplingParams(temperature=5.0, seed=s)], [0])) for s in range(20)}
    assert len(draws) > 1


def test_request_sharing_an_uncomputed_prefix_waits_one_step_then_reuses_it():
    sched = Scheduler(BlockManager(32, 4), max_batched_tokens=64, max_seqs=8)
    a, b, c = seq(0, range(10)), seq(1, list(range(8)) + [50, 51]), seq(2, range(100, 110))
    for s in (a, b, c):
        sched.add(s)
    first = sched.schedule()
    assert [ch.seq.key for ch in first] == [0, 2]          # b shares a's first block: deferred
    for ch in first:
        sched.complete(ch)
        ch.seq.append(1)
    second = sched.schedule()
    assert [(ch.seq.key, ch.start) for ch in second] == [(0, 10), (2, 10), (1, 8)]   # b skips 8 cached tokens


def test_request_waits_for_a_later_prefix_block_being_computed():
    """A shared prefix longer than one block: once its first blocks are cached, a request still waits while
    the next one it needs is being computed, rather than computing it a second time in the same step."""
    sched = Scheduler(BlockManager(32, 4), max_batched_tokens=10, max_seqs=8)
    a = seq(0, range(12))
    sched.add(a)
    step = sched.schedule()
    assert [(ch.seq.key, ch.start, ch.length) for ch in step] == [(0, 0, 10)]
    for ch in step:
        sched.complete(ch)
    b = seq(1, list(range(12)) + [50, 51])
    sched.add(b)
    step = sched.schedule()
    assert [(ch.seq.key, ch.start, ch.length) for ch in step] == [(0, 10, 2)]   # b needs block 8..11: in flight
    for ch in step:
        sched.complete(ch)
        ch.seq.append(1)
    step = sched.schedule()
    assert [(ch.seq.key, ch.start, ch.length) for ch in step] == [(0, 12, 1), (1, 12, 2)]   # 12 tokens reused
