"""Benchmark harness and metrics."""
