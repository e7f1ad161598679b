import torch

from heartfast.model.llm import DenseCausal, PackedCausal
from heartfast.train.losses import IGNORE_INDEX
from heartfast.train.packing import Sample, pack, pad


def _sample(n: int, answer: int, signals: int = 0, seed: int = 0) -> Sample:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n,), generator=g).tolist()
    labels = [IGNORE_INDEX] * (n - answer) + ids[n - answer:]
    return Sample(ids, labels, [torch.randn(signals, 3, generator=g)] if signals else [], [])


def test_pack_concatenates_with_restarting_positions_and_features_in_order():
    a, b, c = _sample(5, 2, signals=4, seed=1), _sample(3, 1, seed=2), _sample(7, 3, signals=2, seed=3)
    batch = pack([a, b, c])
    assert batch.cu_seqlens.tolist() == [0, 5, 8, 15] and batch.cu_seqlens.dtype == torch.int32
    assert batch.positions[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 4, 5, 6]
    assert batch.input_ids[0].tolist() == a.input_ids + b.input_ids + c.input_ids
    assert batch.labels[0].tolist() == a.labels + b.labels + c.labels
    assert torch.equal(batch.signal_features, torch.cat([a.signal_features[0], c.signal_features[0]]))
    assert batch.image_features is None
    assert a.answer_tokens == 2 and c.answer_tokens == 3


def test_pad_masks_padding_and_never_labels_it():
    a, b = _sample(5, 2, seed=1), _sample(3, 1, seed=2)
    batch, mask = pad([a, b], pad_id=99)
    assert batch.input_ids.shape == (2, 5)
    assert mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert batch.input_ids[1, 3:].tolist() == [99, 99]
    assert batch.labels[1].tolist() == b.labels + [IGNORE_INDEX] * 2


def test_padded_packed_attention_matches_each_sequence_alone_in_values_and_gradients():
    torch.manual_seed(0)
    lengths = [7, 3, 11]
    cu = torch.tensor([0, 7, 10, 21], dtype=torch.int32)
    q = torch.randn(1, 21, 4, 8, requires_grad=True)
    k = torch.randn(1, 21, 2, 8, requires_grad=True)
    v = torch.randn(1, 21, 2, 8, requires_grad=True)
    out = PackedCausal(cu).attend(0, q, k, v)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    grads = [x.grad.clone() for x in (q, k, v)]
    dense = DenseCausal()
    start = 0
    for n in lengths:
        piece = [x.detach()[:, start:start + n].clone().requires_grad_(True) for x in (q, k, v)]
        ref = dense.attend(0, *piece)
        torch.testing.assert_close(out[:, start:start + n], ref, rtol=1e-5, atol=1e-6)
        (ref * weights[:, start:start + n]).sum().backward()
        for g, p in zip(grads, piece):
            torch.testing.assert_close(g[:, start:start + n], p.grad, rtol=1e-5, atol=1e-6)
        start += n
