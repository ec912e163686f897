"""Chapter 6 (a search system): plausible wrong answers and the hint each one must trigger.

Each ``code`` is a complete answer cell; it runs after the notebook's set-up cell, so
``torch`` and ``F`` (``torch.nn.functional``) are in scope. The visible checks of
``solutions/ch06/ch06_exercises.ipynb`` carry these outputs on fixed inputs, so each
hint is printed when its mistake is made; the hidden tests fail on all of them too.
"""

from __future__ import annotations

from autograder.mistakes import Mistake


def _m(function: str, name: str, hint: str, body: str, args: str) -> Mistake:
    lines = "\n".join("    " + line if line else "" for line in body.strip("\n").splitlines())
    return Mistake(function=function, name=name, hint=hint, code=f"def {function}({args}):\n{lines}\n")


# ---------------------------------------------------------------- top_k_search


def _t(name: str, hint: str, body: str) -> Mistake:
    return _m("top_k_search", name, hint, body, "query_features, index_features, k")


_CHECK_K = """
if k > index_features.shape[0]:
    raise ValueError("k is larger than the index")
"""
_COS = "sims = F.normalize(query_features, dim=-1) @ F.normalize(index_features, dim=-1).T"

TOP_K = [
    _t("no_normalisation", "L2-normalise both the queries and the index features", f"""
{_CHECK_K}
sims = query_features @ index_features.T
scores, ids = torch.sort(sims, dim=1, descending=True, stable=True)
return scores[:, :k], ids[:, :k]
"""),
    _t("index_not_normalised", "normalise the index features too", f"""
{_CHECK_K}
sims = F.normalize(query_features, dim=-1) @ index_features.T
scores, ids = torch.sort(sims, dim=1, descending=True, stable=True)
return scores[:, :k], ids[:, :k]
"""),
    _t("ascending", "sort the scores in descending order", f"""
{_CHECK_K}
{_COS}
scores, ids = torch.sort(sims, dim=1, stable=True)
return scores[:, :k], ids[:, :k]
"""),
    _t("ties_by_higher_id", "ties: the lower id comes first", f"""
{_CHECK_K}
{_COS}
scores, pos = torch.sort(sims.flip(1), dim=1, descending=True, stable=True)
ids = sims.shape[1] - 1 - pos
return scores[:, :k], ids[:, :k]
"""),
    _t("off_by_one_k", "return exactly k results per query", f"""
{_CHECK_K}
{_COS}
scores, ids = torch.sort(sims, dim=1, descending=True, stable=True)
return scores[:, :k + 1], ids[:, :k + 1]
"""),
    _t("no_k_check", "raise a ValueError when k is larger than the number of index items", f"""
{_COS}
scores, ids = torch.sort(sims, dim=1, descending=True, stable=True)
return scores[:, :k], ids[:, :k]
"""),
    _t("ids_and_scores_swapped", "return (scores, ids), in that order", f"""
{_CHECK_K}
{_COS}
scores, ids = torch.sort(sims, dim=1, descending=True, stable=True)
return ids[:, :k], scores[:, :k]
"""),
]

# ---------------------------------------------------------------- LRUCache

_CLASS = '''from collections import OrderedDict


class LRUCache:
    def __init__(self, capacity):
{init}
    def get(self, key):
{get}
    def put(self, key, value):
{put}
    def __len__(self):
        return len(self.data)
'''


def _indent(body: str) -> str:
    return "\n".join("        " + line if line else "" for line in body.strip("\n").splitlines()) + "\n"


_INIT = """
if capacity < 1:
    raise ValueError("capacity must be at least 1")
self.capacity = capacity
self.hits = 0
self.misses = 0
self.data = OrderedDict()
"""
_GET = """
if key in self.data:
    self.data.move_to_end(key)
    self.hits += 1
    return self.data[key]
self.misses += 1
return None
"""
_PUT = """
if key in self.data:
    self.data.move_to_end(key)
self.data[key] = value
if len(self.data) > self.capacity:
    self.data.popitem(last=False)
"""


def _c(name: str, hint: str, *, init: str = _INIT, get: str = _GET, put: str = _PUT, code: str | None = None) -> Mistake:
    source = code or _CLASS.format(init=_indent(init), get=_indent(get), put=_indent(put))
    return Mistake(function="LRUCache", name=name, hint=hint, code=source)


CACHE = [
    _c("evicts_most_recent", "evict the least recently used key", put="""
if key in self.data:
    self.data.move_to_end(key)
elif len(self.data) >= self.capacity:
    self.data.popitem(last=True)
self.data[key] = value
"""),
    _c("get_does_not_refresh", "a hit makes the key the most recently used", get="""
if key in self.data:
    self.hits += 1
    return self.data[key]
self.misses += 1
return None
"""),
    _c("put_existing_grows", "the cache must not grow", code='''class LRUCache:
    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self.items = []  # (key, value) pairs, oldest first

    def get(self, key):
        for i in range(len(self.items) - 1, -1, -1):
            if self.items[i][0] == key:
                pair = self.items.pop(i)
                self.items.append(pair)
                self.hits += 1
                return pair[1]
        self.misses += 1
        return None

    def put(self, key, value):
        self.items.append((key, value))
        if len(self.items) > self.capacity:
            self.items.pop(0)

    def __len__(self):
        return len(self.items)
'''),
    _c("update_does_not_refresh", "updating a key with put also makes it the most recently used", put="""
self.data[key] = value
if len(self.data) > self.capacity:
    self.data.popitem(last=False)
"""),
    _c("hits_and_misses_swapped", "count a hit when get finds the key", get="""
if key in self.data:
    self.data.move_to_end(key)
    self.misses += 1
    return self.data[key]
self.hits += 1
return None
"""),
    _c("holds_one_key_too_few", "keep up to capacity keys", put="""
if key in self.data:
    self.data.move_to_end(key)
self.data[key] = value
if len(self.data) >= self.capacity:
    self.data.popitem(last=False)
"""),
    _c("no_capacity_check", "raise a ValueError when capacity", init="""
self.capacity = capacity
self.hits = 0
self.misses = 0
self.data = OrderedDict()
"""),
]

# ---------------------------------------------------------------- encode_in_batches


def _e(name: str, hint: str, body: str) -> Mistake:
    return _m("encode_in_batches", name, hint, body, "encode, items, batch_size")


_CHECKS = """
if batch_size < 1:
    raise ValueError("batch_size must be at least 1")
if len(items) == 0:
    raise ValueError("items is empty")
"""

BATCHES = [
    _e("drops_partial_batch", "keep the last, partial batch", f"""
{_CHECKS}
full = len(items) - len(items) % batch_size
return torch.cat([encode(items[i:i + batch_size]) for i in range(0, full, batch_size)])
"""),
    _e("empty_slice", "never call encode on an empty slice", f"""
{_CHECKS}
outputs = []
for b in range(len(items) // batch_size + 1):
    outputs.append(encode(items[b * batch_size:(b + 1) * batch_size]))
return torch.cat(outputs)
"""),
    _e("batches_reversed", "keep the batches in order", f"""
{_CHECKS}
starts = list(range(0, len(items), batch_size))
outputs = [encode(items[i:i + batch_size]) for i in reversed(starts)]
return torch.cat(outputs)
"""),
    _e("one_big_batch", "call encode on at most batch_size items at a time", f"""
{_CHECKS}
return encode(items)
"""),
    _e("batches_one_too_big", "slices of batch_size + 1", f"""
{_CHECKS}
step = batch_size + 1
return torch.cat([encode(items[i:i + step]) for i in range(0, len(items), step)])
"""),
    _e("returns_a_list", "concatenate the batches into one tensor", f"""
{_CHECKS}
return [encode(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]
"""),
    _e("batch_size_as_number_of_batches", "batch_size is the number of items per call", f"""
{_CHECKS}
step = -(-len(items) // batch_size)
return torch.cat([encode(items[i:i + step]) for i in range(0, len(items), step)])
"""),
]

# ---------------------------------------------------------------- recall_vs_exact


def _r(name: str, hint: str, body: str) -> Mistake:
    return _m("recall_vs_exact", name, hint, body, "approx_ids, exact_ids")


_AS = """
approx, exact = torch.as_tensor(approx_ids), torch.as_tensor(exact_ids)
if approx.shape != exact.shape:
    raise ValueError("shapes differ")
"""

RECALL = [
    _r("divided_by_queries_only", "divide each query", f"""
{_AS}
found = sum(len(set(a) & set(e)) for a, e in zip(approx.tolist(), exact.tolist()))
return float(found / approx.shape[0])
"""),
    _r("positional_match", "the order inside a row does not matter", f"""
{_AS}
return float((approx == exact).float().mean())
"""),
    _r("duplicates_counted_twice", "count each id once", f"""
{_AS}
k = approx.shape[1]
per_query = [sum(1 for i in a if i in e) / k for a, e in zip(approx.tolist(), exact.tolist())]
return float(sum(per_query) / len(per_query))
"""),
    _r("k_is_number_of_rows", "k is the number of columns", f"""
{_AS}
k = approx.shape[0]
per_query = [len(set(a) & set(e)) / k for a, e in zip(approx.tolist(), exact.tolist())]
return float(sum(per_query) / len(per_query))
"""),
    _r("returns_a_tensor", "return a Python float", f"""
{_AS}
k = approx.shape[1]
per_query = torch.tensor([len(set(a) & set(e)) / k for a, e in zip(approx.tolist(), exact.tolist())])
return per_query.mean()
"""),
    _r("no_shape_check", "mismatched shapes raise a ValueError", """
approx, exact = torch.as_tensor(approx_ids), torch.as_tensor(exact_ids)
k = approx.shape[1]
per_query = [len(set(a) & set(e)) / k for a, e in zip(approx.tolist(), exact.tolist())]
return float(sum(per_query) / len(per_query))
"""),
]

MISTAKES = [*TOP_K, *CACHE, *BATCHES, *RECALL]
