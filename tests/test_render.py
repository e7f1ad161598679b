"""The renderer draws the right picture: grid pitch, calibration pulse, traces and labels where the paper
conventions (25 mm/s, 10 mm/mV) put them, crops on the right leads, sizes and dtypes, CPU batch semantics;
and the rasteriser's integer primitives (runs, stroke pixels, packed blends) against plain references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from heartfast.render.glyphs import text_bitmap
from heartfast.render.layout import LAYOUTS, get_layout, viewport
from heartfast.render.raster import runs, stroke_pixels
from heartfast.render.renderer import (ECGRenderer, Style, blend_words, crop_boxes, grid_background, lead_crops,
                                       render)

WHITE = (255, 255, 255)
INK_ONLY = Style(minor_rgb=WHITE, major_rgb=WHITE)   # no grid: the image is the ink alone
FS = 500.0


def blank(batch: int = 1, seconds: float = 10.0) -> torch.Tensor:
    return torch.full((batch, 12, int(seconds * FS) + 1), math.nan)


def darkness(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W] ink coverage of black-ink-on-white images."""
    return 1 - images[:, 0].float() / 255


def column_centroids(dark: torch.Tensor, rows: slice) -> torch.Tensor:
    """Darkness-weighted centre (px, pixel row r spans [r, r+1)) of each column within `rows`."""
    window = dark[rows]
    y = torch.arange(rows.start, rows.stop, dtype=torch.float32)[:, None] + 0.5
    return (window * y).sum(0) / window.sum(0).clamp_min(1e-6)


@pytest.mark.parametrize("size", [(2200, 1700), (1100, 850)])
def test_grid_lines_at_1mm_and_5mm_pitch(size):
    layout = get_layout("12x1")
    view = viewport(layout, size)
    style = Style()
    row = grid_background(layout, view, style)[1, int(view.y(100.5))]   # green channel, a row between lines
    dark = 255 - row
    for pitch in (5.0, 1.0):
        ks = [k for k in range(3, 40) if pitch == 5.0 or k % 5]
        found = []
        for k in ks:
            centre = view.x(pitch * k)
            lo, hi = math.floor(centre - 1.5), math.ceil(centre + 1.5)
            profile = dark[lo:hi]
            found.append(float(((torch.arange(lo, hi) + 0.5) * profile).sum() / profile.sum()))
            # a line thinner than a pixel can only be placed to the pixel: within half a pixel
            assert abs(found[-1] - centre) <= 0.5, (pitch, k, found[-1], centre)
            assert dark[int(view.x(pitch * k + 0.5))] == 0      # half-way to the next line: paper only
        slope = np.polyfit(np.array(ks, dtype=float) * pitch, np.array(found), 1)[0]
        assert abs(slope - view.sx) < 0.002 * view.sx, (pitch, slope, view.sx)
    major = dark[int(view.x(50.0))]
    minor = dark[int(view.x(51.0))]
    assert major > minor > 0


def test_calibration_pulse_is_1mv_by_200ms():
    renderer = ECGRenderer("12x1", (2200, 1700), style=INK_ONLY)
    dark = darkness(renderer(blank(), FS))[0]
    view, (x, base) = renderer.view, renderer.layout.calibrations[0]
    top_px, base_px = view.y(base - 10.0), view.y(base)
    band = slice(math.floor(view.y(base - 13)), math.ceil(view.y(base + 3)))
    # flat top 1 mV above the baseline in the middle of the pulse; baseline before and after it
    assert abs(column_centroids(dark, band)[int(view.x(x + 5.0))] - top_px) < 0.3
    assert abs(column_centroids(dark, band)[int(view.x(x + 1.25))] - base_px) < 0.3
    assert abs(column_centroids(dark, band)[int(view.x(x + 8.75))] - base_px) < 0.3
    # rising and falling edges 5 mm (200 ms at 25 mm/s) apart, at the right columns
    mid = int(view.y(base - 5.0))
    cols = torch.nonzero(dark[mid] > 0.5).flatten().float() + 0.5
    rising, falling = cols[cols < view.x(x + 5)].mean(), cols[cols > view.x(x + 5)].mean()
    assert abs(rising - view.x(x + 2.5)) < 1.0 and abs(falling - view.x(x + 7.5)) < 1.0
    assert abs((falling - rising) - 5.0 * view.sx) < 1.0
    # nothing above the pulse top
    assert dark[math.floor(top_px - 4), int(view.x(x)):int(view.x(x + 10))].max() == 0


@pytest.mark.parametrize("layout,size", [("12x1", (2200, 1700)), ("12x1", 384), ("6x2", 336), ("3x4", (1100, 850))])
def test_sine_wave_lands_on_the_mv_to_pixel_mapping(layout, size):
    renderer = ECGRenderer(layout, size, style=INK_ONLY)
    view = renderer.view
    signals = blank()
    t = torch.arange(signals.shape[-1]) / FS
    signals[0, 0] = 0.5 * torch.sin(2 * math.pi * 1.3 * t)                      # lead I
    dark = darkness(renderer(signals, FS))[0]
    panel = renderer.layout.panels[0]
    band = slice(max(0, math.floor(view.y(panel.baseline_mm - 7))), math.ceil(view.y(panel.baseline_mm + 7)))
    centres = column_centroids(dark, band)
    first, last = math.ceil(view.x(panel.x_mm + 6)), math.floor(view.x(panel.x_mm + panel.width_mm - 1))
    cols = torch.arange(first, last)
    seconds = panel.start_s + ((cols + 0.5 - view.ox) / view.sx - panel.x_mm) / 25.0
    expected = view.y(panel.baseline_mm) - view.sy * 10.0 * 0.5 * torch.sin(2 * math.pi * 1.3 * seconds)
    error = (centres[cols] - expected).abs()
    assert error.max() < 0.35, float(error.max())


def test_lead_labels_are_the_glyphs_at_their_places():
    renderer = ECGRenderer("6x2", (1450, 1600), style=INK_ONLY)     # 10 px per mm
    dark = darkness(renderer(blank(seconds=5.0), FS))[0]
    view, layout = renderer.view, renderer.layout
    cell = layout.label_height_mm / 7
    for panel in layout.lead_panels:
        bitmap = text_bitmap(panel.name)
        lx, ly = layout.label_position(panel)
        x0, y0 = view.x(lx), view.y(ly)
        cell_x, cell_y = cell * view.sx, cell * view.sy
        # sample each glyph cell at its centre: ink exactly where the bitmap has it
        ys = (y0 + (torch.arange(bitmap.shape[0]) + 0.5) * cell_y).long()
        xs = (x0 + (torch.arange(bitmap.shape[1]) + 0.5) * cell_x).long()
        assert torch.equal(dark[ys][:, xs] > 0.5, bitmap > 0), panel.name
        # and nothing just left of or above the label
        assert dark[int(y0) - 3:int(y0 + 7 * cell_y), int(x0) - 3].max() == 0
        assert dark[int(y0) - 3, int(x0):int(x0 + bitmap.shape[1] * cell_x)].max() == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lead_crops_hold_their_own_lead(layout):
    renderer = ECGRenderer(layout, 768, style=INK_ONLY)
    signals = blank(12)
    for lead in range(12):
        signals[lead, lead] = 0.0                          # image i: a flat line on lead i only
    images = renderer(signals, FS)
    crops = lead_crops(images, layout)
    boxes = crop_boxes(renderer.layout, renderer.view)
    assert crops.shape[:3] == (12, 12, 3) and crops.dtype == torch.uint8
    for lead, panel in enumerate(renderer.layout.lead_panels):
        row = round(renderer.view.y(panel.baseline_mm)) - boxes[lead][0]
        lines = darkness(crops[:, lead])[:, row - 1:row + 2].amax(1)                 # [image, w]
        covered = (lines > 0.3).float().mean(-1)
        assert covered[lead] > 0.9, (layout, lead, covered[lead])
        others = torch.cat([covered[:lead], covered[lead + 1:]])
        assert others.max() < 0.2, (layout, lead, others.max())   # only labels/ticks of other leads


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", [(2200, 1700), 384, 336, 224])
def test_output_dtype_and_shape(layout, size):
    signals = torch.randn(2, 12, 5000) * 0.3
    images = ECGRenderer(layout, size)(signals, FS)
    width, height = (size, size) if isinstance(size, int) else size
    assert images.shape == (2, 3, height, width) and images.dtype == torch.uint8
    crops = lead_crops(images, layout)
    assert crops.shape[:3] == (2, 12, 3) and crops.shape[3] > 0 and crops.shape[4] > 0


def test_batch_equals_single_images_and_missing_data_is_blank():
    renderer = ECGRenderer("3x4", 300)
    signals = torch.randn(3, 12, 3000).cumsum(-1) * 0.01
    batch = renderer(signals, FS)
    for i in range(3):
        assert torch.equal(batch[i], renderer(signals[i:i + 1], FS)[0])
    assert torch.equal(render(signals.numpy(), FS, "3x4", 300), batch)
    assert renderer(signals[:0], FS).shape == (0, 3, 300, 300)
    # a 6 s record on a 10 s page: the rhythm strip ends at 6 s; NaN samples leave gaps, not lines
    empty = renderer(blank(), FS)[0]
    strip = renderer.layout.panels[12]
    cut = math.ceil(renderer.view.x(strip.x_mm + 6.2 * 25))
    rows = slice(math.floor(renderer.view.y(strip.clip_top_mm)), math.ceil(renderer.view.y(strip.clip_bottom_mm)))
    assert torch.equal(batch[0][:, rows, cut:], empty[:, rows, cut:])


def test_letterbox_keeps_millimetres_square_and_pads_white():
    renderer = ECGRenderer("12x1", 384, fit="letterbox")
    assert renderer.view.sx == renderer.view.sy
    image = renderer(blank(), FS)[0]
    pad = int(renderer.view.oy) - 1
    assert pad > 10 and bool((image[:, :pad] == 255).all()) and bool((image[:, -pad:] == 255).all())


def test_bad_input_is_refused():
    renderer = ECGRenderer("6x2", 224)
    with pytest.raises(ValueError, match="12, samples"):
        renderer(torch.zeros(1, 11, 100), FS)
    with pytest.raises(ValueError, match="unknown layout"):
        get_layout("4x3")
    with pytest.raises(ValueError, match="2-5 s"):
        get_layout("6x2", 8.0)


def test_gpu_and_cpu_agree_when_cuda_is_present():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    signals = torch.randn(4, 12, 5000).cumsum(-1) * 0.01
    cpu = ECGRenderer("6x2", 384)(signals, FS)
    gpu = ECGRenderer("6x2", 384, device="cuda")(signals.cuda(), FS).cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 1


def test_drawing_into_a_reused_buffer_gives_the_same_images():
    renderer = ECGRenderer("6x2", 200)
    signals = torch.randn(2, 12, 2600).cumsum(-1) * 0.01
    buffer = renderer.buffer(2)
    first = renderer(signals, FS, out=buffer).clone()
    assert torch.equal(first, renderer(signals, FS))
    assert torch.equal(renderer(signals.flip(0), FS, out=buffer)[1], first[0])   # nothing left from before
    with pytest.raises(ValueError, match="buffer"):
        renderer(signals, FS, out=renderer.buffer(3))


def test_coloured_ink_blends_like_black_ink():
    signals = torch.randn(1, 12, 5000).cumsum(-1) * 0.01
    black = ECGRenderer("12x1", 300, style=INK_ONLY)(signals, FS)[0].int()
    blue_ink = Style(minor_rgb=WHITE, major_rgb=WHITE, ink_rgb=(0, 0, 120))
    blue = ECGRenderer("12x1", 300, style=blue_ink)(signals, FS)[0].int()
    assert torch.equal(blue[0], black[0]) and torch.equal(blue[1], black[1])      # red, green fade alike
    coverage = (255 - black[0]) / 255
    assert ((255 - (255 - 120) * coverage) - blue[2]).abs().max() <= 1            # blue fades to 120
    with pytest.raises(ValueError, match="darker than the paper"):
        ECGRenderer("6x2", 100, style=Style(paper_rgb=(200, 200, 200), ink_rgb=(220, 0, 0)))
    with pytest.raises(ValueError, match="darker than the major grid"):
        ECGRenderer("6x2", 100, style=Style(ink_rgb=(0, 0, 120)))     # the default major grid has blue 60


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_runs_enumerate_like_repeat_interleave(dtype):
    gen = torch.Generator().manual_seed(3)
    length = torch.randint(0, 5, (1001,), generator=gen).to(dtype)
    length[:3] = 0                                      # empty runs first, in a row, and last
    length[500:504] = 0
    length[-2:] = 0
    start = torch.randint(-50, 10_000, (1001,), generator=gen).to(dtype)
    offset = torch.arange(int(length.sum())) - torch.repeat_interleave(torch.cumsum(length, 0) - length, length)
    expected = torch.repeat_interleave(start, length) + 7 * offset
    got = runs(start, length, 7)
    assert got.dtype == dtype and torch.equal(got, expected.to(dtype))
    assert runs(start[:0], length[:0], 7).numel() == 0
    assert runs(start[:4], length[:4] * 0, 7).numel() == 0


def test_stroke_pixels_cover_like_a_dense_box_filter():
    height, width = 37, 53                              # one stroke per column of a [37, 53] image
    gen = torch.Generator().manual_seed(4)
    top = torch.rand(width, generator=gen) * height
    bottom = (top + torch.rand(width, generator=gen) * 12).clamp(max=height)
    bottom[5] = top[5] - 0.5                            # inverted: nothing
    top[7] = bottom[7] = math.nan                       # missing samples: nothing
    top[9], bottom[9] = 3.2, 3.7                        # within one row
    top[11], bottom[11] = height - 0.25, float(height)  # the last row only
    top[13], bottom[13] = 0.0, float(height)            # the whole column
    for dtype in (torch.int32, torch.int64):
        ends, coverage, interior = stroke_pixels(top, bottom, torch.arange(width, dtype=dtype), width, height)
        assert ends.dtype == interior.dtype == dtype
        assert bool((ends >= 0).all() & (ends < height * width).all()), "rows outside the image"
        image = torch.zeros(height * width)
        image.scatter_reduce_(0, ends.long(), coverage, "amax")
        assert bool((image[interior.long()] == 0).all())  # interior rows are not end rows
        image[interior.long()] = 1.0
        r = torch.arange(height, dtype=torch.float32)[:, None]
        dense = (torch.minimum(r + 1, bottom) - torch.maximum(r, top)).nan_to_num(0).clamp(0, 1)
        assert torch.allclose(image.view(height, width), dense, atol=1e-6)


def test_packed_blend_matches_per_channel_arithmetic():
    gen = torch.Generator().manual_seed(5)
    ink = torch.tensor([30, 0, 120, 255], dtype=torch.uint8)
    paper = torch.randint(0, 256, (4001, 4), generator=gen, dtype=torch.int32).clamp(min=ink.int()).to(torch.uint8)
    paper[:, 3] = 255
    keep = torch.randint(0, 129, (4001,), generator=gen, dtype=torch.int32)
    keep[:2] = torch.tensor([0, 128])
    words = blend_words(paper.view(torch.int32).flatten(), ink.view(torch.int32), keep)
    channels = words.view(torch.uint8).view(-1, 4).int()
    expected = ink.int() + (((paper.int() - ink.int()) * keep[:, None] + 64) >> 7)
    assert torch.equal(channels, expected)
    assert torch.equal(channels[0], ink.int()) and torch.equal(channels[1], paper[1].int())
