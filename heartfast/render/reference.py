"""The matplotlib reference renderer: the same layouts and geometry as `ECGRenderer`, drawn with Agg.

It is the baseline the torch renderer is measured against, in its fastest ordinary form: one figure is
built per (layout, size) with its grid, calibration pulses and labels, and each image only updates the 12-13
trace lines' y data and redraws. Lead names use matplotlib's monospace font (same place and height).
"""
from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from heartfast.io.record import LEADS_12
from heartfast.render.layout import GAIN_MM_PER_MV, SPEED_MM_PER_S, Layout, get_layout, viewport
from heartfast.render.renderer import Style

_DPI = 100.0


class MatplotlibRenderer:
    """Renders [B, 12, T] mV signals to uint8 [B, 3, H, W] one image at a time, reusing one figure."""

    def __init__(self, layout: str | Layout = "6x2", size: int | tuple[int, int] = 384, fit: str = "stretch",
                 seconds_per_lead: float | None = None, style: Style = Style()) -> None:
        self.layout = get_layout(layout, seconds_per_lead) if isinstance(layout, str) else layout
        self.view = view = viewport(self.layout, size, fit)
        page_w, page_h = self.layout.width_mm, self.layout.height_mm
        self.figure = Figure(figsize=(view.width / _DPI, view.height / _DPI), dpi=_DPI, facecolor="white")
        self.canvas = FigureCanvasAgg(self.figure)
        ax = self.figure.add_axes((view.ox / view.width, 1 - (view.oy + view.sy * page_h) / view.height,
                                   view.sx * page_w / view.width, view.sy * page_h / view.height))
        ax.set_xlim(0, page_w)
        ax.set_ylim(page_h, 0)
        ax.set_axis_off()
        points = lambda mm, scale: mm * scale * 72.0 / _DPI
        rgb = lambda c: tuple(v / 255 for v in c)
        ax.add_patch(_rectangle(page_w, page_h, rgb(style.paper_rgb)))
        for pitch, width, colour in ((1.0, style.minor_width_mm, style.minor_rgb),
                                     (5.0, style.major_width_mm, style.major_rgb)):
            xs, ys = np.arange(0, page_w + 1e-9, pitch), np.arange(0, page_h + 1e-9, pitch)
            ax.add_collection(LineCollection([[(x, 0), (x, page_h)] for x in xs], colors=[rgb(colour)],
                                             linewidths=points(width, view.sx)))
            ax.add_collection(LineCollection([[(0, y), (page_w, y)] for y in ys], colors=[rgb(colour)],
                                             linewidths=points(width, view.sy)))
        line_width = max(style.line_width_mm * view.sy, style.min_line_px) * 72.0 / _DPI
        ink = rgb(style.ink_rgb)
        for x, base in self.layout.calibrations:
            ax.plot([x, x + 2.5, x + 2.5, x + 7.5, x + 7.5, x + 10.0],
                    [base, base, base - GAIN_MM_PER_MV, base - GAIN_MM_PER_MV, base, base], color=ink, lw=line_width)
        for x, base in self.layout.separators:
            ax.plot([x, x], [base - 2.5, base + 2.5], color=ink, lw=line_width)
        cap_height = 0.72  # monospace capital height per font size
        for panel in self.layout.panels:
            lx, ly = self.layout.label_position(panel)
            ax.text(lx, ly, panel.name, va="top", ha="left", family="monospace", color=ink,
                    fontsize=self.layout.label_height_mm * view.sy / cap_height * 72.0 / _DPI)
        self._lines = []
        for panel in self.layout.panels:
            t = np.arange(int(round(panel.duration_s * 1000)) + 1) / 1000.0  # replaced on first use
            (line,) = ax.plot(panel.x_mm + t * SPEED_MM_PER_S, np.full_like(t, panel.baseline_mm), color=ink,
                              lw=line_width, clip_on=True)
            line.set_clip_box(None)
            self._lines.append(line)
        self._fs: float | None = None

    def _set_times(self, fs: float) -> None:
        for panel, line in zip(self.layout.panels, self._lines):
            n = int(round(panel.duration_s * fs)) + 1
            first = int(round(panel.start_s * fs))
            t = (first + np.arange(n)) / fs - panel.start_s
            line.set_xdata(panel.x_mm + t * SPEED_MM_PER_S)
        self._fs = fs

    def render_one(self, signal: np.ndarray, fs: float) -> np.ndarray:
        """uint8 [3, H, W] of one signal [12, T] in mV."""
        if self._fs != fs:
            self._set_times(fs)
        n_samples = signal.shape[1]
        for panel, line in zip(self.layout.panels, self._lines):
            n = int(round(panel.duration_s * fs)) + 1
            first = int(round(panel.start_s * fs))
            values = np.full(n, np.nan)
            stop = min(first + n, n_samples)
            values[:max(0, stop - first)] = signal[panel.lead, first:stop]
            line.set_ydata(panel.baseline_mm - GAIN_MM_PER_MV * values)
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].transpose(2, 0, 1).copy()

    def __call__(self, signals: np.ndarray, fs: float) -> np.ndarray:
        """uint8 [B, 3, H, W] of signals [B, 12, T] in mV (LEADS_12 order)."""
        signals = np.asarray(signals, dtype=np.float32)
        if signals.ndim != 3 or signals.shape[1] != len(LEADS_12):
            raise ValueError(f"signals must be [batch, 12, samples] in mV, got {signals.shape}")
        return np.stack([self.render_one(s, fs) for s in signals])


def _rectangle(width: float, height: float, colour: tuple[float, ...]):
    from matplotlib.patches import Rectangle

    return Rectangle((0, 0), width, height, facecolor=colour, edgecolor="none", zorder=0)
