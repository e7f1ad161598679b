"""Batch inference: continuous batching, paged KV cache, prefix cache, sampling."""
