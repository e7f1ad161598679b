"""The batched ECG renderer: signals [B, 12, T] in mV -> uint8 images [B, 3, H, W], on CPU or GPU.

Everything that does not depend on the signal (grid, calibration pulses, lead-change ticks, lead names)
is drawn once per (layout, size, device) into a cached background and an ink-coverage plane. Per batch only
the traces are rasterised (see `raster`): for each group of equally long panels, one gather of the samples,
the per-column spans, the coverage window of every panel, and a max-paste per panel (a loop over <= 13
panels, never over images). The picture is then background * (1 - coverage) + ink * coverage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from heartfast.io.record import LEADS_12
from heartfast.render.glyphs import text_coverage
from heartfast.render.layout import (GAIN_MM_PER_MV, SPEED_MM_PER_S, Layout, Panel, Viewport, get_layout,
                                     viewport)
from heartfast.render.raster import ColumnPlan, line_coverage, stroke_pixels, widen


@dataclass(frozen=True)
class Style:
    """Colours (RGB 0-255) and widths (mm) of the paper; traces are at least `min_line_px` thick."""

    line_width_mm: float = 0.3
    min_line_px: float = 1.0
    minor_width_mm: float = 0.1
    major_width_mm: float = 0.2
    paper_rgb: tuple[int, int, int] = (255, 255, 255)
    minor_rgb: tuple[int, int, int] = (245, 160, 160)
    major_rgb: tuple[int, int, int] = (225, 60, 60)
    ink_rgb: tuple[int, int, int] = (0, 0, 0)


def line_half_widths(view: Viewport, style: Style) -> tuple[float, int]:
    """Half the trace thickness in y pixels, and the column radius that keeps vertical strokes as wide."""
    thick_y = max(style.line_width_mm * view.sy, style.min_line_px)
    thick_x = max(style.line_width_mm * view.sx, style.min_line_px)
    return thick_y / 2, int(round((thick_x - 1) / 2))


def grid_background(layout: Layout, view: Viewport, style: Style) -> torch.Tensor:
    """[3, H, W] float 0-255: paper with 1 mm minor and 5 mm major lines (white outside the page)."""
    def page_share(n_px: int, offset: float, scale: float, extent: float) -> torch.Tensor:
        edges = (torch.arange(n_px + 1, dtype=torch.float64) - offset) / scale
        return ((edges[1:].clamp(0, extent) - edges[:-1].clamp(0, extent)) * scale).float()

    page = page_share(view.height, view.oy, view.sy, layout.height_mm)[:, None] * \
        page_share(view.width, view.ox, view.sx, layout.width_mm)[None, :]

    def cover(pitch: float, width: float) -> torch.Tensor:
        cx = line_coverage(view.width, view.ox, view.sx, pitch, width, layout.width_mm)
        cy = line_coverage(view.height, view.oy, view.sy, pitch, width, layout.height_mm)
        return (1 - (1 - cy[:, None]) * (1 - cx[None, :])) * page

    rgb = lambda c: torch.tensor(c, dtype=torch.float32)[:, None, None]
    image = torch.lerp(torch.full((3, view.height, view.width), 255.0), rgb(style.paper_rgb), page)
    image = torch.lerp(image, rgb(style.minor_rgb), cover(1.0, style.minor_width_mm))
    return torch.lerp(image, rgb(style.major_rgb), cover(5.0, style.major_width_mm))


def _polyline(canvas: torch.Tensor, points_mm: list[tuple[float, float]], view: Viewport, style: Style) -> None:
    """canvas [H, W] = max(canvas, coverage of one static x-monotone polyline given in page mm)."""
    x = torch.tensor([view.x(px) for px, _ in points_mm], dtype=torch.float64)
    y = torch.tensor([[view.y(py) for _, py in points_mm]], dtype=torch.float32)
    half, radius = line_half_widths(view, style)
    col0 = math.floor(x.min().item()) - radius
    n_cols = math.ceil(x.max().item()) - col0 + radius + 1
    plan = ColumnPlan.build((x - col0)[None], n_cols, torch.arange(len(points_mm))[None])
    low, high = plan.extent(y)
    top, bottom = widen(low.masked_fill(~plan.drawn, math.nan), high.masked_fill(~plan.drawn, math.nan), radius)
    cols = col0 + torch.arange(n_cols)
    top = (top - half).clamp(min=0)
    bottom = torch.where((cols >= 0) & (cols < view.width), (bottom + half).clamp(max=view.height), math.nan)
    ends, cov, interior = stroke_pixels(top.flatten(), bottom.flatten(), cols.clamp(0, view.width - 1), view.width)
    canvas.view(-1)[interior] = 1.0
    canvas.view(-1).scatter_reduce_(0, ends, cov, "amax")


def static_ink(layout: Layout, view: Viewport, style: Style) -> torch.Tensor:
    """[H, W] ink coverage of what every image shares: calibration pulses, lead-change ticks, lead names."""
    canvas = torch.zeros(view.height, view.width)
    for x, base in layout.calibrations:  # 1 mV x 200 ms pulse in a 10 mm calibration region
        _polyline(canvas, [(x, base), (x + 2.5, base), (x + 2.5, base - GAIN_MM_PER_MV),
                           (x + 7.5, base - GAIN_MM_PER_MV), (x + 7.5, base), (x + 10.0, base)], view, style)
    for x, base in layout.separators:
        _polyline(canvas, [(x, base - 2.5), (x, base + 2.5)], view, style)
    cell = layout.label_height_mm / 7
    for panel in layout.panels:
        lx, ly = layout.label_position(panel)
        cov, row0, col0 = text_coverage(panel.name, view.x(lx), view.y(ly), cell * view.sx, cell * view.sy,
                                        view.width, view.height)
        region = canvas[row0:row0 + cov.shape[0], col0:col0 + cov.shape[1]]
        torch.maximum(region, cov, out=region)
    return canvas


@dataclass
class _PanelGroup:
    """Trace geometry of equally long panels for one (fs, T): which samples, and where they land."""

    base_px: torch.Tensor       # [P, 1] y pixel of 0 mV
    clip_top: torch.Tensor      # [P, 1] rows a trace may use: [clip_top, clip_bottom] within the image
    clip_bottom: torch.Tensor
    cols: torch.Tensor          # [P, C] image column of each plan column (clamped into the image)
    cols_ok: torch.Tensor       # [P, C] the column is inside the image and holds trace
    plan: ColumnPlan


def _panel_group(panels: list[Panel], fs: float, n_samples: int, view: Viewport, radius: int,
                 device: torch.device) -> _PanelGroup:
    n = int(round(panels[0].duration_s * fs)) + 1
    first = torch.tensor([int(round(p.start_s * fs)) for p in panels])
    samples = first[:, None] + torch.arange(n)
    start_s = torch.tensor([p.start_s for p in panels], dtype=torch.float64)[:, None]
    x_mm = torch.tensor([p.x_mm for p in panels], dtype=torch.float64)[:, None]
    x = view.ox + view.sx * (x_mm + (samples.double() / fs - start_s) * SPEED_MM_PER_S)
    col0 = torch.floor(x[:, :1]) - radius
    n_cols = int((torch.ceil(x[:, -1:]) - col0).max()) + radius + 1
    cols = (col0 + torch.arange(n_cols)).long()
    # vertex values are read from the signals [B, 12 * T]; samples past the end are absent vertices
    source = torch.tensor([p.lead for p in panels])[:, None] * n_samples + samples.clamp(max=n_samples - 1)
    plan = ColumnPlan.build(torch.where(samples < n_samples, x - col0, math.inf), n_cols, source, device)
    column = lambda values: torch.tensor(values, dtype=torch.float32, device=device)[:, None]
    return _PanelGroup(
        base_px=column([view.y(p.baseline_mm) for p in panels]),
        clip_top=column([max(0.0, view.y(p.clip_top_mm)) for p in panels]),
        clip_bottom=column([min(float(view.height), view.y(p.clip_bottom_mm)) for p in panels]),
        cols=cols.clamp(0, view.width - 1).to(device),
        cols_ok=((cols >= 0) & (cols < view.width)).to(device) & plan.drawn,
        plan=plan)


class ECGRenderer:
    """Renders batches of 12-lead signals on one layout at one size; caches everything signal-independent.

    >>> renderer = ECGRenderer("6x2", 384)
    >>> images = renderer(signals_mv, fs=500)   # [B, 12, T] -> uint8 [B, 3, 384, 384]

    Samples past a record's end are not drawn (NaN samples blank their pixel columns). `fit`: "stretch"
    (default; a square output stretches the page as CLIP/SigLIP resizing does) or "letterbox" (1 mm stays
    square). Traces are composited by darkening (the ink must be darker than the paper in every channel).
    """

    def __init__(self, layout: str | Layout = "6x2", size: int | tuple[int, int] = 384, fit: str = "stretch",
                 seconds_per_lead: float | None = None, style: Style = Style(),
                 device: str | torch.device = "cpu") -> None:
        if any(i > p for i, p in zip(style.ink_rgb, style.paper_rgb)):
            raise ValueError(f"ink {style.ink_rgb} must be darker than paper {style.paper_rgb} in every channel")
        self.layout = get_layout(layout, seconds_per_lead) if isinstance(layout, str) else layout
        self.view = viewport(self.layout, size, fit)
        self.fit = fit
        self.style = style
        self.device = torch.device(device)
        ink = torch.tensor(style.ink_rgb, dtype=torch.float32)[:, None, None]
        grid = grid_background(self.layout, self.view, style)
        background = torch.lerp(grid, ink, static_ink(self.layout, self.view, style)).round_().to(torch.uint8)
        self.background = background.to(self.device)                                       # [3, H, W]
        alpha = torch.full((1, *background.shape[1:]), 255, dtype=torch.uint8)
        self._background_rgba = torch.cat([background, alpha]).permute(1, 2, 0).contiguous().to(self.device)
        ink_rgba = torch.tensor([*style.ink_rgb, 255], dtype=torch.uint8)
        self._ink_rgba = ink_rgba.float().to(self.device)
        self._black_ink = not any(style.ink_rgb)
        self._ink_word = int(ink_rgba.view(torch.int32))
        self._half, self._radius = line_half_widths(self.view, style)
        self._groups: dict[tuple[float, int], list[_PanelGroup]] = {}

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return self.view.height, self.view.width

    def _plan(self, fs: float, n_samples: int) -> list[_PanelGroup]:
        key = (float(fs), int(n_samples))
        if key not in self._groups:
            by_duration: dict[float, list[Panel]] = {}
            for panel in self.layout.panels:
                by_duration.setdefault(panel.duration_s, []).append(panel)
            self._groups[key] = [_panel_group(panels, fs, n_samples, self.view, self._radius, self.device)
                                 for panels in by_duration.values()]
        return self._groups[key]

    def _strokes(self, group: _PanelGroup, flat_signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, P, C] stroke top and bottom (px rows; NaN = nothing) of the group's traces."""
        low, high = group.plan.extent(flat_signals)
        if self._radius:  # columns without trace must not widen their neighbours
            low, high = low.masked_fill(~group.plan.drawn, math.nan), high.masked_fill(~group.plan.drawn, math.nan)
        gain = self.view.sy * GAIN_MM_PER_MV
        top, bottom = widen(group.base_px - gain * high, group.base_px - gain * low, self._radius)
        top = torch.maximum(top - self._half, group.clip_top)
        bottom = torch.minimum(bottom + self._half, group.clip_bottom)
        return top, bottom.masked_fill_(~group.cols_ok, math.nan)

    def buffer(self, batch: int) -> torch.Tensor:
        """An output buffer for `batch` images ([B, H, W, 4] uint8), to reuse across calls with `out=`."""
        return torch.empty((batch, *self.size, 4), dtype=torch.uint8, device=self.device)

    def __call__(self, signals: torch.Tensor | np.ndarray, fs: float, out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 images [B, 3, H, W] of signals [B, 12, T] (mV, LEADS_12 order) sampled at `fs` Hz.

        The result is a channels-last view (memory [B, H, W, 4] RGBA, what PNG writers and channels-last
        convolutions want); call `.contiguous()` where [B, 3, H, W] memory is needed. `out` (from
        `buffer`) is drawn into instead of fresh memory: a loop then skips allocating (and the OS zeroing)
        a new image batch per call; the returned view shares its memory."""
        signals = torch.as_tensor(signals, dtype=torch.float32, device=self.device)
        if signals.ndim != 3 or signals.shape[1] != len(LEADS_12):
            raise ValueError(f"signals must be [batch, 12, samples] in mV (LEADS_12 order), got {tuple(signals.shape)}")
        if not fs > 0:
            raise ValueError(f"sampling rate must be positive, got {fs}")
        batch, _, n_samples = signals.shape
        height, width = self.size
        if n_samples < 2:
            raise ValueError(f"signals need at least 2 samples, got {n_samples}")
        flat_signals = signals.contiguous().view(batch, -1)
        # RGBA storage: each pixel is one 32-bit word, read, blended and written at once. Blends of the
        # same pixel towards the (darker) ink are ordered like their coverage in every channel, so the
        # smallest word is the darkest: scatter "amin" composites overlapping strokes.
        if out is None:
            out = self.buffer(batch)
        elif out.shape != (batch, height, width, 4) or out.dtype != torch.uint8 or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous uint8 [{batch}, {height}, {width}, 4] tensor (see buffer())")
        out.view(batch, -1).copy_(self._background_rgba.view(1, -1).expand(batch, -1))
        words = out.view(torch.int32).view(-1)
        for group in self._plan(fs, n_samples):
            top, bottom = self._strokes(group, flat_signals)
            base = torch.arange(batch, device=self.device)[:, None] * (height * width) + group.cols.view(1, -1)
            ends, cov, interior = stroke_pixels(top.flatten(), bottom.flatten(), base.flatten(), width)
            words.index_fill_(0, interior, self._ink_word)          # fully covered: the ink itself
            keep = (1 - cov).unsqueeze_(1)
            current = words.index_select(0, ends).view(torch.uint8).view(-1, 4).float()
            if self._black_ink:     # alpha (255) stays; colour channels fade to 0
                current[:, :3].mul_(keep)
                blend = current
            else:
                blend = current.sub_(self._ink_rgba).mul_(keep).add_(self._ink_rgba)
            words.scatter_reduce_(0, ends, blend.round_().to(torch.uint8).view(torch.int32).view(-1), "amin")
        return out[..., :3].permute(0, 3, 1, 2)


def render(signals: torch.Tensor | np.ndarray, fs: float, layout: str = "6x2", size: int | tuple[int, int] = 384,
           fit: str = "stretch", seconds_per_lead: float | None = None,
           device: str | torch.device | None = None) -> torch.Tensor:
    """One-call form of `ECGRenderer` (builds the cached background each call; keep a renderer for loops)."""
    if device is None:
        device = signals.device if isinstance(signals, torch.Tensor) else "cpu"
    return ECGRenderer(layout, size, fit, seconds_per_lead, device=device)(signals, fs)


def crop_boxes(layout: Layout, view: Viewport) -> list[tuple[int, int, int, int]]:
    """(row, col, height, width) in pixels of each of the 12 lead panels (its row band, label included)."""
    panels = layout.lead_panels
    height = max(1, round((panels[0].bottom_mm - panels[0].top_mm) * view.sy))
    width = max(1, round(panels[0].width_mm * view.sx))
    return [(round(view.y(p.top_mm)), round(view.x(p.x_mm)), height, width) for p in panels]


def lead_crops(images: torch.Tensor, layout: str | Layout, fit: str = "stretch",
               seconds_per_lead: float | None = None) -> torch.Tensor:
    """The 12 lead-wise crops DSPA's image stream encodes: images [B, 3, H, W] -> [B, 12, 3, h, w]."""
    layout = get_layout(layout, seconds_per_lead) if isinstance(layout, str) else layout
    view = viewport(layout, (images.shape[-1], images.shape[-2]), fit)
    return torch.stack([images[..., r:r + h, c:c + w] for r, c, h, w in crop_boxes(layout, view)], dim=1)
