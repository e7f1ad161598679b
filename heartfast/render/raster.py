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
    copy of the samples is made). Vertices at x = +inf are absent (past the end of the data).
    """

    n_cols: int
    edge_left: torch.Tensor     # [P * (C+1)] source index of the vertex left of each column edge
    edge_right: torch.Tensor    # [P * (C+1)] ... and right of it
    edge_t: torch.Tensor        # [P, C+1] interpolation weight between them
    vertices: torch.Tensor      # [P * K * C] source index of the vertices inside each column (padded)
    n_slots: int                # K
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
        return ColumnPlan(n_cols, source_index.gather(1, seg).flatten().to(device),
                          source_index.gather(1, seg + 1).flatten().to(device), t.float().to(device),
                          vertices.flatten().to(device), k, drawn.to(device))

    def extent(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(min, max) [B, P, C] of each column's points read from `source` [B, S] (columns not `drawn`
        hold arbitrary values: mask them)."""
        batch = source.shape[0]
        edge_values = torch.lerp(source.index_select(1, self.edge_left).view(batch, *self.edge_t.shape),
                                 source.index_select(1, self.edge_right).view(batch, *self.edge_t.shape), self.edge_t)
        points = source.index_select(1, self.vertices).view(batch, -1, self.n_slots, self.n_cols)
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


def stroke_pixels(top: torch.Tensor, bottom: torch.Tensor, base: torch.Tensor,
                  row_pitch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels the strokes [top, bottom] (px rows, flat [S]; NaN or top >= bottom = nothing) touch.

    Pixel (row r of stroke s) has flat index base[s] + r * row_pitch; rows must lie in the image. Returns
    (ends [2S], ends_coverage [2S], interior [E]): each stroke's first and last row with the fraction of the
    row inside the stroke (coverage 0 for strokes with no such row: a no-op), and the flat index of every
    fully covered row between them. Only the interior is enumerated, so the work is S + E.
    """
    first = torch.floor(top)
    end = torch.ceil(bottom)                                  # one past the last row
    count = (end - first).nan_to_num_(0).clamp_(min=0)
    one, several = count > 0, count > 1
    first.masked_fill_(~one, 0)
    first_cov = torch.minimum(first + 1, bottom).sub_(top).masked_fill_(~one, 0)   # first >= top never
    last_cov = (bottom - end).add_(1).masked_fill_(~several, 0)
    first_row = first.long()
    rows = torch.cat([first_row, torch.where(several, end - 1, first).long()])
    ends = rows.mul_(row_pitch).add_(base.repeat(2))
    inner = (count - 2).clamp_(min=0).long()
    source = torch.repeat_interleave(inner)
    key = (first_row + 1 - (torch.cumsum(inner, 0) - inner)).mul_(row_pitch).add_(base)
    interior = key[source].add_(torch.arange(source.numel(), device=top.device).mul_(row_pitch))
    return ends, torch.cat([first_cov, last_cov]).clamp_(0, 1), interior


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
