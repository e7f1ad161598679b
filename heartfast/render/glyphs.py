"""A hand-drawn 5x7 bitmap font for lead names (I, II, III, aVR, aVL, aVF, V1-V6), no font files.

`text_coverage` rasterises a string at any pixel scale by exact area sampling: the coverage of an output
pixel is the area of the glyph cells inside it, computed as Oy @ bitmap @ Ox^T with Ox/Oy the 1-D overlap
lengths between output pixels and glyph cells.
"""
from __future__ import annotations

import torch

GLYPH_ROWS, GLYPH_COLS = 7, 5

_FONT = {
    "I": [".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "V": ["#...#", "#...#", "#...#", "#...#", ".#.#.", ".#.#.", "..#.."],
    "a": [".....", ".....", ".###.", "....#", ".####", "#...#", ".####"],
    "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
    "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
    "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
    "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    "3": ["####.", "....#", "....#", ".###.", "....#", "....#", "####."],
    "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    "6": ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."],
}


def text_bitmap(text: str) -> torch.Tensor:
    """[7, 6 * len(text) - 1] float 0/1: glyphs side by side with one blank column between."""
    rows = []
    for r in range(GLYPH_ROWS):
        cells = []
        for ch in text:
            if ch not in _FONT:
                raise ValueError(f"no glyph for {ch!r} in {text!r}; the font has {''.join(_FONT)}")
            cells.append(_FONT[ch][r])
        rows.append(".".join(cells))
    return torch.tensor([[c == "#" for c in row] for row in rows], dtype=torch.float32)


def _overlap(n_px: int, start_px: float, cell_px: float, n_cells: int) -> torch.Tensor:
    """[n_px, n_cells]: length of [j, j+1) ∩ [start + k*cell, start + (k+1)*cell)."""
    j = torch.arange(n_px, dtype=torch.float64)[:, None]
    k = torch.arange(n_cells, dtype=torch.float64)[None, :]
    lo = start_px + k * cell_px
    return (torch.minimum(j + 1, lo + cell_px) - torch.maximum(j, lo)).clamp_min(0)


def text_coverage(text: str, x_px: float, y_px: float, cell_x_px: float, cell_y_px: float,
                  width: int, height: int) -> tuple[torch.Tensor, int, int]:
    """Coverage in [0, 1] of `text` with its top-left at (x_px, y_px), glyph cells of the given size.

    Returns (coverage [h, w], row0, col0): the window of the output image the text touches, clipped to it.
    """
    bitmap = text_bitmap(text).double()
    col0, row0 = max(0, int(x_px)), max(0, int(y_px))
    col1 = min(width, int(x_px + cell_x_px * bitmap.shape[1]) + 1)
    row1 = min(height, int(y_px + cell_y_px * bitmap.shape[0]) + 1)
    if col1 <= col0 or row1 <= row0:
        return torch.zeros(0, 0), row0, col0
    ox = _overlap(col1 - col0, x_px - col0, cell_x_px, bitmap.shape[1])
    oy = _overlap(row1 - row0, y_px - row0, cell_y_px, bitmap.shape[0])
    return (oy @ bitmap @ ox.T).clamp(0, 1).float(), row0, col0
