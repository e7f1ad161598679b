"""The batched ECG renderer: signals [B, 12, T] in mV -> uint8 images [B, 3, H, W], on CPU or GPU.

Everything that does not depend on the signal (grid, calibration pulses, lead-change ticks, lead names)
is drawn once per (layout, size, device) into a cached RGBA background. Per batch only the traces are
rasterised (see `raster`): for each group of equally long panels, one gather of the samples and the
per-column stroke spans; then, for all groups at once, the pixels the strokes touch (two partly covered
end rows per column, and runs of fully covered rows between them), a copy of the background into the
images, and two scatters into them: the ink word into the fully covered pixels, and the background blended
towards the ink by coverage into the end rows. No dense per-pixel pass but the background copy, no loop
over images or samples.
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
    ends, cov, interior = stroke_pixels(top.flatten(), bottom.flatten(), cols.clamp(0, view.width - 1),
                                        view.width, view.height)
    canvas.view(-1).scatter_(0, interior, 1.0)
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

    top_px: torch.Tensor        # [P, 1] y pixel of 0 mV, minus half the line thickness
    bottom_px: torch.Tensor     # [P, 1] ... plus half the line thickness
    clip_top: torch.Tensor      # [P, 1] rows a trace may use: [clip_top, clip_bottom] within the image;
    clip_bottom: torch.Tensor   # [P, C] -inf where the column is outside the image or holds no trace
    cols: torch.Tensor          # [P * C] int32 image column of each plan column (clamped into the image)
    plan: ColumnPlan


def _panel_group(panels: list[Panel], fs: float, n_samples: int, view: Viewport, half: float, radius: int,
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
    column = lambda values: torch.tensor(values, dtype=torch.float32)[:, None]
    clip_bottom = column([min(float(view.height), view.y(p.clip_bottom_mm)) for p in panels])
    cols_ok = (cols >= 0) & (cols < view.width) & plan.drawn.cpu()
    return _PanelGroup(
        top_px=column([view.y(p.baseline_mm) - half for p in panels]).to(device),
        bottom_px=column([view.y(p.baseline_mm) + half for p in panels]).to(device),
        clip_top=column([max(0.0, view.y(p.clip_top_mm)) for p in panels]).to(device),
        clip_bottom=torch.where(cols_ok, clip_bottom, -math.inf).to(device),
        cols=cols.clamp(0, view.width - 1).flatten().to(device, torch.int32),
        plan=plan)


@dataclass
class _TracePlan:
    """All panel groups of one (fs, T), and the image column of every stroke they draw, in drawing order."""

    groups: list[_PanelGroup]
    cols: torch.Tensor          # [sum of P * C] int32


COVERAGE_LEVELS = 128   # stroke coverage is blended in 1/128 steps (see blend_words)


def blend_words(paper: torch.Tensor, ink: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """RGBA words (int32) ink + (paper - ink) * keep / 128 per channel, rounded; `keep` in [0, 128].

    Two channels at a time in one int32 (SWAR): with paper >= ink in every channel the byte-wise difference
    has no borrows, each channel times 128 fits in 16 bits, so R/B and G/A scale as two 16-bit lanes
    without crossing into each other or into the sign bit. keep = 128 returns the paper word exactly.
    """
    lanes, rounding = 0x00FF00FF, 0x00400040
    difference = paper - ink
    low = (difference & lanes).mul_(keep).add_(rounding).bitwise_right_shift_(7).bitwise_and_(lanes)
    high = (difference >> 8).bitwise_and_(lanes).mul_(keep).add_(rounding).bitwise_right_shift_(7)
    return high.bitwise_and_(lanes).bitwise_left_shift_(8).add_(low).add_(ink)


class ECGRenderer:
    """Renders batches of 12-lead signals on one layout at one size; caches everything signal-independent.

    >>> renderer = ECGRenderer("6x2", 384)
    >>> images = renderer(signals_mv, fs=500)   # [B, 12, T] -> uint8 [B, 3, 384, 384]

    Samples past a record's end are not drawn (NaN samples blank their pixel columns). `fit`: "stretch"
    (default; a square output stretches the page as CLIP/SigLIP resizing does) or "letterbox" (1 mm stays
    square). Traces are composited by darkening (the ink must be darker than the paper and the grid in every
    channel).
    """

    def __init__(self, layout: str | Layout = "6x2", size: int | tuple[int, int] = 384, fit: str = "stretch",
                 seconds_per_lead: float | None = None, style: Style = Style(),
                 device: str | torch.device = "cpu") -> None:
        surfaces = (("paper", style.paper_rgb), ("minor grid", style.minor_rgb), ("major grid", style.major_rgb))
        for name, colour in surfaces:
            if any(i > c for i, c in zip(style.ink_rgb, colour)):
                raise ValueError(f"ink {style.ink_rgb} must be darker than the {name} {colour} in every channel")
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
        background_rgba = torch.cat([background, alpha]).permute(1, 2, 0).contiguous()
        self._background_rgba = background_rgba.to(self.device)                             # [H, W, 4]
        ink_word = torch.tensor([*style.ink_rgb, 255], dtype=torch.uint8).view(torch.int32)
        self._ink_word = ink_word.to(self.device)                                           # [1] int32
        # Every blend a stroke can make, as a table: (background colour, coverage level) -> RGBA word. The
        # background has a few hundred distinct colours (anti-aliased grid lines), so the table stays small
        # (~0.4 MB at 384 px) and a blend is one lookup instead of per-channel arithmetic per pixel.
        colours, colour_of_pixel = torch.unique(background_rgba.view(torch.int32).flatten(), return_inverse=True)
        keep = COVERAGE_LEVELS - torch.arange(COVERAGE_LEVELS + 1, dtype=torch.int32)
        self._blends = blend_words(colours[:, None].expand(-1, len(keep)), ink_word, keep).flatten().to(self.device)
        self._blend_row = (colour_of_pixel * (COVERAGE_LEVELS + 1)).to(self.device, torch.int32)   # [H * W]
        self._half, self._radius = line_half_widths(self.view, style)
        self._plans: dict[tuple[float, int], _TracePlan] = {}

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return self.view.height, self.view.width

    def _plan(self, fs: float, n_samples: int) -> _TracePlan:
        key = (float(fs), int(n_samples))
        if key not in self._plans:
            by_duration: dict[float, list[Panel]] = {}
            for panel in self.layout.panels:
                by_duration.setdefault(panel.duration_s, []).append(panel)
            groups = [_panel_group(panels, fs, n_samples, self.view, self._half, self._radius, self.device)
                      for panels in by_duration.values()]
            self._plans[key] = _TracePlan(groups, torch.cat([g.cols for g in groups]))
        return self._plans[key]

    def _strokes(self, group: _PanelGroup, flat_signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, P * C] stroke top and bottom (px rows; NaN or top >= bottom = nothing) of the group's traces."""
        low, high = group.plan.extent(flat_signals)
        if self._radius:  # columns without trace must not widen their neighbours
            low, high = low.masked_fill(~group.plan.drawn, math.nan), high.masked_fill(~group.plan.drawn, math.nan)
        gain = self.view.sy * GAIN_MM_PER_MV
        top, bottom = widen(torch.add(group.top_px, high, alpha=-gain), torch.add(group.bottom_px, low, alpha=-gain),
                            self._radius)
        top, bottom = torch.maximum(top, group.clip_top), torch.minimum(bottom, group.clip_bottom)
        return top.flatten(1), bottom.flatten(1)

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
        flat_signals = signals.contiguous().view(batch, len(LEADS_12) * n_samples)
        if out is None:
            out = self.buffer(batch)
        elif out.shape != (batch, height, width, 4) or out.dtype != torch.uint8 or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous uint8 [{batch}, {height}, {width}, 4] tensor (see buffer())")
        plan = self._plan(fs, n_samples)
        strokes = [self._strokes(group, flat_signals) for group in plan.groups]
        top, bottom = (torch.cat(side, 1) if len(strokes) > 1 else side[0] for side in zip(*strokes))
        # RGBA storage: each pixel is one 32-bit word, read, blended and written at once. Every stroke
        # pixel is the background blended towards the (darker) ink by its coverage; blends of the same
        # pixel are ordered like their coverage in every channel, so the smallest word is the darkest:
        # scatter "amin" composites overlapping strokes (as the maximum coverage).
        index = torch.int32 if batch * height * width < 2 ** 31 else torch.int64
        image_start = (torch.arange(batch, device=self.device, dtype=index) * (height * width))[:, None]
        ends, coverage, interior = stroke_pixels(top.flatten(), bottom.flatten(),
                                                 (image_start + plan.cols).flatten(), width, height)
        in_image = (ends.view(2, batch, len(plan.cols)) - image_start).flatten()
        level = coverage.mul_(COVERAGE_LEVELS).add_(0.5).to(torch.int32)
        blend = self._blends.index_select(0, self._blend_row.index_select(0, in_image).add_(level))
        # the images are written last, so that the strokes land in them while they are still in cache
        out.copy_(self._background_rgba.expand_as(out))
        words = out.view(torch.int32).view(-1)
        words.scatter_(0, interior, self._ink_word.expand(interior.shape))   # fully covered: the ink itself
        words.scatter_reduce_(0, ends, blend, "amin")
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
