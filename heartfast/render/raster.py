"""Anti-aliased rasterisation primitives, batched in torch: polylines as per-column strokes, grid lines.

A polyline (ECG trace, calibration pulse) that is x-monotone covers, in pixel column [c, c+1), the
vertical span between the min and max of its values at the two column edges (linear interpolation) and at
its vertices inside the column. Its stroke there is that span widened by half the line width; a pixel's
coverage is the length of its row [r, r+1) inside the stroke (a box filter in y). Steep strokes (QRS) fill
the span exactly; flat strokes get soft top and bottom edges.

Cost: which vertices and edges belong to which column depends only on the geometry (layout, size, fs,
length), so `ColumnPlan` precomputes the gather indices; per batch the column extents are one gather and a
min and a max reduction over ~N values per trace, and only the pixels a stroke touches are enumerated
(`stroke_pixels`: a few per column), never the whole image. Work is O(B * panels * (N + stroke pixels)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ColumnPlan:
    """Column geometry of P polylines: which source values are each column's points, and the edge weights.

    Vertex values are read by index from a flat source [B, S] (for traces: the signals themselves, so no
    copy of the samples is made), in one gather per batch: for each polyline, the vertices left and right
    of every column edge, then the vertices inside every column. One pass over each polyline's samples
    while they are in cache, instead of one pass per kind of read. Vertices at x = +inf are absent (past
    the end of the data).
    """

    n_cols: int
    reads: torch.Tensor         # [P * (2 * (C+1) + K * C)] int32 source index: left, right, inside (below)
    edge_t: torch.Tensor        # [P, C+1] interpolation weight between the vertices left and right of an edge
    n_slots: int                # K: vertices inside a column (padded with repeats of its first)
    drawn: torch.Tensor         # [P, C] the column holds part of the polyline

    @staticmethod
    def build(x: torch.Tensor, n_cols: int, source_index: torch.Tensor,
              device: torch.device | str = "cpu") -> "ColumnPlan":
        """`x`: [P, N] non-decreasing vertex positions (px, relative to each polyline's column 0; +inf for
        absent vertices); `source_index`: [P, N] where each vertex's value sits in the flat source."""
        x = x.double()
        n_poly, n = x.shape
        if n < 2:
            raise ValueError("a polyline needs at least 2 vertices")
        edges = torch.arange(n_cols + 1, dtype=torch.float64).expand(n_poly, -1).contiguous()
        seg = (torch.searchsorted(x, edges, right=True) - 1).clamp(0, n - 2)
        x0, x1 = x.gather(1, seg), x.gather(1, seg + 1)
        t = ((edges - x0) / (x1 - x0).clamp_min(1e-12)).nan_to_num(0).clamp(0, 1)
        x_last = torch.where(x.isfinite(), x, -math.inf).amax(1, keepdim=True)
        inside = (edges >= x[:, :1]) & (edges <= x_last)
        first = torch.searchsorted(x, edges)                                  # first vertex at or right of edge
        start, count = first[:, :-1], first[:, 1:] - first[:, :-1]
        k = max(1, int(count.max()))
        slot = torch.arange(k)[None, :, None]                                 # [1, K, 1]
        vertex = (start[:, None, :] + torch.where(slot < count[:, None, :], slot, 0)).clamp(max=n - 1)
        vertices = source_index.gather(1, vertex.flatten(1))                  # [P, K * C]
        drawn = (count > 0) | inside[:, :-1] | inside[:, 1:]
        reads = torch.cat([source_index.gather(1, seg), source_index.gather(1, seg + 1), vertices], 1)
        return ColumnPlan(n_cols, reads.flatten().to(device, torch.int32), t.float().to(device), k, drawn.to(device))

    def extent(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(min, max) [B, P, C] of each column's points read from `source` [B, S] (columns not `drawn`
        hold arbitrary values: mask them)."""
        n_poly, n_edges = self.edge_t.shape
        values = source.index_select(1, self.reads).view(source.shape[0], n_poly, self.reads.numel() // n_poly)
        edge_values = torch.lerp(values[..., :n_edges], values[..., n_edges:2 * n_edges], self.edge_t)
        points = values[..., 2 * n_edges:].unflatten(-1, (self.n_slots, self.n_cols))
        low, high = points.amin(2), points.amax(2)    # (two reductions beat torch.aminmax over a middle dim)
        low = torch.minimum(low, torch.minimum(edge_values[..., :-1], edge_values[..., 1:]))
        high = torch.maximum(high, torch.maximum(edge_values[..., :-1], edge_values[..., 1:]))
        return low, high


def widen(top: torch.Tensor, bottom: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Union of each column's span [top, bottom] with its `radius` neighbours, so that strokes wider than a
    pixel stay that wide where they are vertical. NaN (empty) columns do not spread."""
    if radius <= 0:
        return top, bottom
    shape = top.shape
    pool = lambda v: F.max_pool1d(v.reshape(-1, 1, shape[-1]), 2 * radius + 1, 1, radius).reshape(shape)
    return -pool(-top.nan_to_num(math.inf)), pool(bottom.nan_to_num(-math.inf))


def runs(start: torch.Tensor, length: torch.Tensor, step: int) -> torch.Tensor:
    """The arithmetic runs start[s] + j * step (0 <= j < length[s]) one after another, as one flat tensor.

    A repeat_interleave-free enumeration: every output differs from the one before by `step`, except at a
    run's first element, which jumps from the previous run's last; so the output is the cumulative sum of
    `step`s with those jumps added at the run starts. The jumps telescope over empty runs, so no run has to
    be filtered out first. All partial sums are outputs, so the dtype of `start` (int32) only has to hold
    the outputs. Work: 2 passes over the output, a few over the runs.
    """
    ends = torch.cumsum(length, 0, dtype=length.dtype)
    total = int(ends[-1]) if ends.numel() else 0
    before = start - step                                   # the element a run continues from
    last = before + length * step                           # its last element (`before` when empty)
    previous = torch.cat([last.new_zeros(1), last[:-1]])
    steps = torch.full((total + 1,), step, dtype=start.dtype, device=start.device)
    steps.scatter_add_(0, ends - length, before - previous)  # empty runs: jumps cancel out
    return torch.cumsum(steps[:total], 0, dtype=start.dtype)


def stroke_pixels(top: torch.Tensor, bottom: torch.Tensor, base: torch.Tensor, row_pitch: int,
                  height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels the vertical strokes [top, bottom] (px rows in [0, height], flat [S]; NaN or
    top >= bottom = nothing) touch.

    Pixel (row r of stroke s) has flat index base[s] + r * row_pitch. Returns (ends [2S], ends_coverage [2S],
    interior [E]): the flat index of each stroke's first and last row (the same pixel for one-row strokes)
    with the fraction of the row inside the stroke (0 for empty strokes: a no-op), and the flat index of
    every fully covered row between them. Indices have the dtype of `base`. Work: S + E.
    """
    top = top.nan_to_num(nan=float(height))
    bottom = bottom.nan_to_num(nan=0.0)
    first = top.floor().clamp_(0, height - 1)
    rows = torch.stack([first, torch.maximum(bottom.ceil().sub_(1), first).clamp_(max=height - 1)])
    coverage = torch.minimum(rows + 1, bottom).sub_(torch.maximum(rows, top)).clamp_(0, 1)
    rows = rows.to(base.dtype)
    ends = rows * row_pitch + base
    inner = (rows[1] - rows[0]).sub_(1).clamp_(min=0)
    return ends.flatten(), coverage.flatten(), runs(ends[0] + row_pitch, inner, row_pitch)


def line_coverage(n_px: int, offset: float, scale: float, pitch_mm: float, width_mm: float,
                  extent_mm: float) -> torch.Tensor:
    """[n_px] fraction of each pixel covered by lines `width_mm` wide centred on every multiple of
    `pitch_mm`, within the page [0, extent_mm] (exact box filter: any scale, no moiré from point sampling)."""
    def covered_up_to(u: torch.Tensor) -> torch.Tensor:  # mm of line in [-width/2, u]
        s = (u + width_mm / 2) / pitch_mm
        return torch.floor(s) * width_mm + (torch.frac(s) * pitch_mm).clamp(max=width_mm)

    edges = (torch.arange(n_px + 1, dtype=torch.float64) - offset) / scale
    inside = edges.clamp(0, extent_mm)
    covered = covered_up_to(inside[1:]) - covered_up_to(inside[:-1])
    return (covered / (edges[1:] - edges[:-1])).clamp(0, 1).float()
