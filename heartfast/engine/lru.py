"""A bounded cache for what a long serving run reuses: encoder features, loaded records, rendered pictures.

A bench asks its questions about one ECG close together, so keeping the most recently used few hundred
entries gets nearly every reuse, while a run over 100k ECGs no longer keeps every record, picture and
feature it ever touched (a 1.1B model's image features alone are ~1 MB an ECG). A miss costs a reload or
a recompute, never a wrong answer.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most `capacity` entries; reading or writing one makes it the most recent, the oldest goes first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an LRU cache needs room for at least one entry, not {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
