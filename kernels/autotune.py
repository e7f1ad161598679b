"""Autotune configs that also work under the Triton interpreter (which can't try several)."""
from __future__ import annotations

import os

import triton


def configs(candidates: list[triton.Config]) -> list[triton.Config]:
    """All candidates on a GPU; only the first under TRITON_INTERPRET=1."""
    return candidates[:1] if os.environ.get("TRITON_INTERPRET", "0") == "1" else candidates
