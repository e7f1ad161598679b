"""Paper geometry of the printed 12-lead layouts, in millimetres, and its mapping to output pixels.

A layout is defined once in mm on a page (y grows downwards): where each lead's trace starts, its
baseline, the seconds it shows, the calibration pulses and the lead-name positions. Both renderers (the
torch rasteriser and the matplotlib reference) and `lead_crops` read the same `Layout`, so their pictures
and crop boxes agree by construction. Paper conventions: 25 mm/s and 10 mm/mV.

Layouts:
- "12x1" (GEM, ECG-Image-Kit style): 12 rows, 10 s per lead, US letter landscape 279.4 x 215.9 mm
  (11 x 8.5 in; 2200 x 1700 px at 200 dpi).
- "6x2" (Heartcare): limb leads in the left column, V1-V6 in the right; the right column continues in
  time (2.5 s per lead by default: 0-2.5 s then 2.5-5 s). Page sized to the content, 25 mm per row.
- "3x4" (clinical print): I/aVR/V1/V4, II/aVL/V2/V5, III/aVF/V3/V6, each column the next 2.5 s, plus a
  10 s lead II rhythm strip; US letter landscape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from heartfast.io.record import LEADS_12

SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
LETTER_MM = (279.4, 215.9)
CAL_WIDTH_MM = 10.0        # calibration region at the start of each row: 2.5 mm flat, 5 mm pulse, 2.5 mm flat
MARGIN_MM = 5.0
BASELINE_FRACTION = 0.6    # baseline sits 60% down its row: more room for R waves than for S waves
LABEL_HEIGHT_MM = 3.5
FITS = ("stretch", "letterbox")


@dataclass(frozen=True)
class Panel:
    """One trace on the page: `duration_s` of lead `lead` from `start_s`, drawn from (x_mm, baseline_mm)."""

    lead: int                 # index into LEADS_12
    start_s: float
    duration_s: float
    x_mm: float               # left end of the trace (time start_s)
    baseline_mm: float        # y of 0 mV
    top_mm: float             # the panel's row band [top_mm, bottom_mm]: its crop box and label place
    bottom_mm: float
    clip_top_mm: float        # the trace is drawn within [clip_top_mm, clip_bottom_mm] (overflow into
    clip_bottom_mm: float     # neighbouring rows allowed up to half a row)

    @property
    def width_mm(self) -> float:
        return self.duration_s * SPEED_MM_PER_S

    @property
    def name(self) -> str:
        return LEADS_12[self.lead]


@dataclass(frozen=True)
class Layout:
    """A page: lead panels (the first 12 are I..V6 in LEADS_12 order; extras are rhythm strips)."""

    name: str
    width_mm: float
    height_mm: float
    panels: tuple[Panel, ...]
    calibrations: tuple[tuple[float, float], ...]   # (x_mm, baseline_mm): left end of each row's pulse
    separators: tuple[tuple[float, float], ...]     # (x_mm, baseline_mm): lead-change ticks between columns
    label_height_mm: float = LABEL_HEIGHT_MM

    @property
    def lead_panels(self) -> tuple[Panel, ...]:
        return self.panels[:len(LEADS_12)]

    @property
    def duration_s(self) -> float:
        """Seconds of signal the page shows (the longest panel end)."""
        return max(p.start_s + p.duration_s for p in self.panels)

    def label_position(self, panel: Panel) -> tuple[float, float]:
        """Top-left corner (mm) of a panel's lead name: above the start of the trace, 7.5 mm (0.75 mV) over
        its baseline, and at least 1 mm inside its row band."""
        return panel.x_mm + 1.0, max(panel.top_mm + 1.0, panel.baseline_mm - 7.5 - self.label_height_mm)


@dataclass(frozen=True)
class Viewport:
    """Affine map page mm -> output pixels: px = offset + scale * mm (pixel j spans [j, j+1))."""

    width: int
    height: int
    sx: float
    sy: float
    ox: float
    oy: float

    def x(self, mm: float) -> float:
        return self.ox + self.sx * mm

    def y(self, mm: float) -> float:
        return self.oy + self.sy * mm


def viewport(layout: Layout, size: int | tuple[int, int], fit: str = "stretch") -> Viewport:
    """Pixel mapping for an output `size` (int: square; or (width, height)).

    "stretch" fills the image (x and y scales differ on a square output, as when CLIP/SigLIP processors
    resize a page to a square); "letterbox" keeps 1 mm square and centres the page on white.
    """
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width < 16 or height < 16:
        raise ValueError(f"image size {width}x{height} is too small (at least 16 px a side)")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
    sx, sy = width / layout.width_mm, height / layout.height_mm
    if fit == "letterbox":
        sx = sy = min(sx, sy)
    return Viewport(width, height, sx, sy, (width - sx * layout.width_mm) / 2, (height - sy * layout.height_mm) / 2)


def _page(name: str, rows: list[list[int]], seconds: float, rhythm: list[int],
          page: tuple[float, float] | None, row_pitch_mm: float | None) -> Layout:
    """Rows of lead columns (each column the next `seconds`), then full-width rhythm strips.

    Trace starts and baselines are put on whole millimetres (trace starts on 5 mm) so that the time and
    voltage origins sit on grid lines.
    """
    n_cols = max(len(r) for r in rows)
    trace_mm = n_cols * seconds * SPEED_MM_PER_S
    content_w = CAL_WIDTH_MM + trace_mm
    n_rows = len(rows) + len(rhythm)
    if page is None:
        assert row_pitch_mm is not None
        page = (content_w + 2 * MARGIN_MM, n_rows * row_pitch_mm + 2 * MARGIN_MM)
    width, height = page
    pitch = row_pitch_mm or math.floor((height - 2 * MARGIN_MM) / n_rows)
    cal_x = 5.0 * math.floor((width - content_w) / 2 / 5.0)
    trace_x = cal_x + CAL_WIDTH_MM
    top0 = round((height - n_rows * pitch) / 2)
    panels: list[Panel | None] = [None] * len(LEADS_12)
    extras: list[Panel] = []
    calibrations, separators = [], []
    all_rows = [(r, False) for r in rows] + [([lead], True) for lead in rhythm]
    for i, (leads, is_rhythm) in enumerate(all_rows):
        top = top0 + i * pitch
        base = top + round(BASELINE_FRACTION * pitch)
        calibrations.append((cal_x, float(base)))
        dur = trace_mm / SPEED_MM_PER_S if is_rhythm else seconds
        for c, lead in enumerate(leads):
            x = trace_x + c * seconds * SPEED_MM_PER_S
            panel = Panel(lead, c * seconds, dur, x, float(base), float(top), float(top + pitch),
                          float(top - pitch / 2), float(top + 1.5 * pitch))
            if c > 0:
                separators.append((x, float(base)))
            if is_rhythm:
                extras.append(panel)
            else:
                panels[lead] = panel
    assert all(p is not None for p in panels), f"layout {name} misses a lead"
    return Layout(name, width, height, tuple(panels) + tuple(extras), tuple(calibrations), tuple(separators))


LAYOUTS = ("12x1", "6x2", "3x4")


@lru_cache(maxsize=None)
def get_layout(name: str, seconds_per_lead: float | None = None) -> Layout:
    """A layout by name; `seconds_per_lead` changes the 6x2 columns (2-5 s, default 2.5)."""
    if seconds_per_lead is not None and name != "6x2":
        raise ValueError(f"seconds per lead is fixed on layout {name!r}; only 6x2 takes 2-5 s")
    if name == "12x1":
        return _page(name, [[i] for i in range(12)], 10.0, [], LETTER_MM, None)
    if name == "6x2":
        seconds = 2.5 if seconds_per_lead is None else float(seconds_per_lead)
        if not 2.0 <= seconds <= 5.0:
            raise ValueError(f"6x2 shows 2-5 s per lead, not {seconds}")
        return _page(name, [[i, i + 6] for i in range(6)], seconds, [], None, 25.0)
    if name == "3x4":
        rows = [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]
        return _page(name, rows, 2.5, [1], LETTER_MM, None)
    raise ValueError(f"unknown layout {name!r}; choose one of {LAYOUTS}")
