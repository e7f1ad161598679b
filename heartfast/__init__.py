"""heartfast: fast ECG multimodal LLMs (HeartcareGPT / GEM) with Triton kernels."""

__version__ = "0.1.0"
