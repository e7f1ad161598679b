"""ECG images from signals, batched in torch (the matplotlib reference lives in `heartfast.render.reference`)."""
from heartfast.render.augment import augment_paper
from heartfast.render.layout import LAYOUTS, Layout, Panel, get_layout, viewport
from heartfast.render.renderer import ECGRenderer, Style, crop_boxes, lead_crops, render

__all__ = ["LAYOUTS", "ECGRenderer", "Layout", "Panel", "Style", "augment_paper", "crop_boxes", "get_layout",
           "lead_crops", "render", "viewport"]
