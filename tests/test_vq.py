"""Fused residual-VQ kernel (Triton interpreter) against the float32 torch reference."""
from __future__ import annotations

import pytest
import torch

from heartfast.ops.vq import vq_assign, vq_ema_stats, vq_reference


def _distance_to(x: torch.Tensor, books: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Squared distance of each row's level input to the code it chose, per level [N, L] (fp64)."""
    r = x.double()
    out = []
    for level in range(indices.shape[1]):
        book = books[level if books.shape[0] > 1 else 0].double()
        code = book[indices[:, level]]
        out.append(((r - code) ** 2).sum(1))
        r = r - code
    return torch.stack(out, 1)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("n,k,d,levels,shared", [(77, 53, 37, 2, False), (130, 67, 19, 3, True),
                                                  (5, 300, 128, 2, False), (200, 17, 70, 1, True)])
def test_assignment_matches_reference_fp32(n, k, d, levels, shared):
    x = torch.randn(n, d)
    books = torch.randn(1 if shared else levels, k, d)
    got = vq_assign(x, books[0] if shared else books, levels, backend="triton")
    ref = vq_reference(x, books[0] if shared else books, levels)
    assert got.indices.shape == (n, levels) and got.indices.dtype == torch.int64
    # Ties or near-ties may pick another index; the chosen code must be as close as the reference's.
    assert torch.allclose(_distance_to(x, books, got.indices), _distance_to(x, books, ref.indices),
                          rtol=1e-5, atol=1e-4)
    assert (got.indices == ref.indices).float().mean() > 0.99
    assert _rel(got.quantized, ref.quantized) < 1e-5
    assert _rel(got.residual, ref.residual) < 1e-5
    assert _rel(got.quantized + got.residual, x) < 1e-5


def test_assignment_fp16_chooses_codes_as_close_as_reference():
    x = torch.randn(150, 40).half()
    books = torch.randn(2, 45, 40)
    got = vq_assign(x, books, backend="triton")
    ref = vq_reference(x, books)
    assert got.quantized.dtype == torch.float16
    dist_got, dist_ref = _distance_to(x.float(), books, got.indices), _distance_to(x.float(), books, ref.indices)
    assert (dist_got[:, 0] <= dist_ref[:, 0] * (1 + 1e-2) + 1e-2).all()
    assert _rel(got.quantized.float() + got.residual.float(), x.float()) < 1e-2


def test_exact_ties_pick_the_lowest_index():
    books = torch.randn(1, 40, 24)
    books[0, 33] = books[0, 7]           # duplicate code: both are the nearest for rows near it
    x = books[0, [7, 7, 33, 2]] + 1e-3
    got = vq_assign(x, books, backend="triton")
    assert got.indices[:, 0].tolist() == vq_reference(x, books).indices[:, 0].tolist() == [7, 7, 7, 2]


def test_levels_quantize_what_the_previous_level_left():
    x = torch.randn(90, 33)
    books = torch.randn(2, 29, 33)
    both = vq_assign(x, books, backend="triton")
    first = vq_assign(x, books[:1], backend="triton")
    second = vq_assign(first.residual, books[1:], backend="triton")
    assert torch.equal(both.indices[:, 0], first.indices[:, 0])
    assert torch.equal(both.indices[:, 1], second.indices[:, 0])
    assert _rel(both.residual, second.residual) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ema_stats_match_reference(dtype):
    x = torch.randn(211, 45).to(dtype)
    books = torch.randn(2, 61, 45)
    got = vq_ema_stats(x, books, backend="triton")
    ref = vq_reference(x, books, stats=True)
    same = (got.indices == ref.indices).all(1)
    assert same.float().mean() > 0.98
    # Statistics are compared on the rows both chose alike (a near-tie elsewhere moves one row).
    ref_same = vq_reference(x[same], books, stats=True)
    got_same = vq_ema_stats(x[same], books, backend="triton")
    assert torch.equal(got_same.counts, ref_same.counts)
    assert _rel(got_same.sums, ref_same.sums) < 1e-5
    assert _rel(got_same.sq_error, ref_same.sq_error) < 1e-5
    assert got.counts.sum().item() == 2 * x.shape[0]


def test_reference_chunking_does_not_change_results():
    x = torch.randn(100, 20)
    books = torch.randn(2, 31, 20)
    whole, chunked = vq_reference(x, books, stats=True), vq_reference(x, books, stats=True, chunk_rows=7)
    assert torch.equal(whole.indices, chunked.indices)
    assert _rel(chunked.sums, whole.sums) < 1e-6


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="dims"):
        vq_assign(torch.randn(4, 8), torch.randn(2, 5, 9))
    with pytest.raises(ValueError, match="levels"):
        vq_assign(torch.randn(4, 8), torch.randn(2, 5, 8), 3)
