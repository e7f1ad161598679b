"""ECG images from signals, batched in torch."""
