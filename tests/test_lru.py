import pytest

from heartfast.engine.lru import LRUCache


def test_the_least_recently_used_entry_goes_first():
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1          # "a" is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2
    cache.put("a", 10)                  # rewriting refreshes too
    cache.put("d", 4)
    assert cache.get("c") is None and cache.get("a") == 10


def test_a_cache_needs_room():
    with pytest.raises(ValueError, match="at least one"):
        LRUCache(0)
