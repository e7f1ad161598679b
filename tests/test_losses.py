import torch
import torch.nn.functional as F

from heartfast.train.losses import linear_cross_entropy


def _check(dtype, tol, bias):
    T, H, V = 37, 24, 53
    hidden = torch.randn(T, H, dtype=dtype, requires_grad=True)
    weight = (torch.randn(V, H) * 0.2).to(dtype).requires_grad_()
    b = (torch.randn(V) * 0.1).to(dtype).requires_grad_() if bias else None
    labels = torch.randint(0, V, (T,))
    labels[::3] = -100
    loss = linear_cross_entropy(hidden, weight, labels, bias=b, chunk_size=8)
    loss.mul(1.7).backward()
    grads = [hidden.grad, weight.grad] + ([b.grad] if bias else [])
    ref_inputs = [t.detach().double().requires_grad_() for t in [hidden, weight] + ([b] if bias else [])]
    logits = ref_inputs[0] @ ref_inputs[1].T + (ref_inputs[2] if bias else 0)
    ref = F.cross_entropy(logits, labels, ignore_index=-100)
    ref.mul(1.7).backward()
    assert abs(loss.item() - ref.item()) / ref.item() < tol
    for g, r in zip(grads, ref_inputs):
        assert ((g.double() - r.grad).norm() / r.grad.norm()).item() < tol


def test_matches_cross_entropy_fp32():
    _check(torch.float32, 1e-5, bias=False)
    _check(torch.float32, 1e-5, bias=True)


def test_matches_cross_entropy_bf16():
    _check(torch.bfloat16, 2e-2, bias=False)


def test_all_ignored_gives_zero_and_frozen_weight():
    hidden = torch.randn(5, 4, requires_grad=True)
    weight = torch.randn(7, 4)
    loss = linear_cross_entropy(hidden, weight, torch.full((5,), -100))
    loss.backward()
    assert loss.item() == 0 and hidden.grad.abs().sum() == 0


def test_token_weights_give_the_weighted_mean_and_its_gradients():
    T, H, V = 29, 16, 41
    hidden = torch.randn(T, H, dtype=torch.float64, requires_grad=True)
    weight = (torch.randn(V, H, dtype=torch.float64) * 0.2).requires_grad_()
    labels = torch.randint(0, V, (T,))
    labels[::4] = -100
    w = torch.rand(T, dtype=torch.float64) + 0.1
    loss = linear_cross_entropy(hidden, weight, labels, chunk_size=8, token_weights=w)
    loss.backward()
    h2, w2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    per_row = F.cross_entropy(h2 @ w2.T, labels, ignore_index=-100, reduction="none")
    kept = (labels != -100).double() * w
    ref = (per_row * kept).sum() / kept.sum()
    ref.backward()
    torch.testing.assert_close(loss.double(), ref)
    torch.testing.assert_close(hidden.grad, h2.grad)
    torch.testing.assert_close(weight.grad, w2.grad)
