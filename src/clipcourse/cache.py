"""A least-recently-used cache with hit and miss counts (chapter 6 grades :class:`LRUCache`).

Search traffic is skewed: a few queries ("red circle") come back again and
again, most come once. Caching the *query embedding* of the hot ones skips the
text encoder, the most expensive stage of a text search on a small index.
An LRU cache keeps the ``capacity`` keys used most recently and drops the one
used longest ago when a new key arrives; ``hits``/``misses`` say whether it pays.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["LRUCache", "replay_cache"]


class LRUCache:
    """``get``/``put`` in O(1) on an ``OrderedDict`` ordered from least to most recently used.

    >>> cache = LRUCache(2)
    >>> cache.put("a", 1); cache.put("b", 2); cache.get("a")
    1
    >>> cache.put("c", 3)          # evicts "b", the least recently used
    >>> cache.get("b") is None, cache.hits, cache.misses
    (True, 1, 1)
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        """The stored value (and the key becomes the most recently used), or ``None``; counts a hit or a miss."""
        if key in self._data:
            self._data.move_to_end(key)
            self.hits += 1
            return self._data[key]
        self.misses += 1
        return None

    def put(self, key: Hashable, value: Any) -> None:
        """Insert or update ``key`` as the most recently used; evict the least recently used beyond ``capacity``."""
        if key in self._data:
            self._data.move_to_end(key)
        self._data[key] = value
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        """Membership without touching recency or the counts."""
        return key in self._data

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses); 0.0 before any ``get``."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def clear(self) -> None:
        """Drop every key and reset the counts."""
        self._data.clear()
        self.hits = self.misses = 0

    def __repr__(self) -> str:
        return f"LRUCache(capacity={self.capacity}, size={len(self)}, hits={self.hits}, misses={self.misses})"


def replay_cache(cache_class: type, capacity: int, operations: list[tuple]) -> dict[str, Any]:
    """Run ``operations`` on ``cache_class(capacity)`` and report plain data (for checks and grading).

    ``operations`` holds ``("put", key, value)`` and ``("get", key)`` tuples. Returns
    ``{"gets": [value or None per get], "sizes": [len after each operation], "hits": int, "misses": int}``;
    every value is turned into a plain ``int``/``str``/``None`` (anything else into its ``repr``),
    so a learner's object can never fake a comparison.
    """

    def plain(v: Any) -> Any:
        return v if v is None or type(v) in (int, str, float, bool) else repr(v)

    cache = cache_class(capacity)
    gets, sizes = [], []
    for op in operations:
        if op[0] == "put":
            cache.put(op[1], op[2])
        elif op[0] == "get":
            gets.append(plain(cache.get(op[1])))
        else:
            raise ValueError(f"unknown operation {op!r}: use ('put', key, value) or ('get', key)")
        sizes.append(plain(len(cache)))
    return {"gets": gets, "sizes": sizes, "hits": plain(cache.hits), "misses": plain(cache.misses)}
