"""Vector indexes for embedding search: FAISS behind one small interface.

A CLIP search engine stores one L2-normalised embedding per item; the inner
product of two such vectors is their cosine similarity, so every index here
uses FAISS's inner-product metric on normalised vectors. Three kinds, following
FAISS's own guidelines (https://github.com/facebookresearch/faiss/wiki/Guidelines-to-choose-an-index):

* ``"flat"`` (``IndexFlatIP``): exact, compares the query with every vector.
  Best below about a million vectors when exact answers matter;
* ``"hnsw"`` (``IndexHNSWFlat``, Malkov & Yashunin 2018): a navigable graph;
  ``hnsw_m`` links per node (memory, build time), ``ef_search`` candidates kept
  during a search (recall against speed, changeable at query time);
* ``"ivf"`` (``IndexIVFFlat``): k-means into ``nlist`` cells (needs
  :meth:`VectorIndex.train`), a query scans the ``nprobe`` nearest cells;
* ``"ivfpq"`` (``IndexIVFPQ``, Jégou et al. 2011): the same cells, each vector
  stored as ``pq_m`` one-byte codes: scores are approximate, so exact
  re-ranking of its candidates (:meth:`VectorIndex.exact_scores`) pays.

Ids are positions in insertion order (0, 1, 2, ...), and :attr:`VectorIndex.metadata`
holds one entry per id, so ``metadata[id]`` is always the item a result names,
after incremental adds, saves and loads. A copy of the normalised vectors is
kept for exact re-ranking (:meth:`VectorIndex.exact_scores`).

:meth:`VectorIndex.save` writes a folder with the FAISS index, the vectors and
a ``meta.json`` holding checksums and a *fingerprint* of the model and config
that produced the vectors; :meth:`VectorIndex.load` refuses a corrupt folder
(:class:`IndexFileError`) and one built by another model (:class:`IndexMismatchError`).

:class:`ShardedIndex` splits the vectors over several indexes and merges their
top-k lists, returning exactly what one exact index returns (what
``faiss.IndexShards`` does inside one process, written out so the merge is visible).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

__all__ = [
    "INDEX_KINDS",
    "IndexConfig",
    "IndexFileError",
    "IndexMismatchError",
    "ShardedIndex",
    "VectorIndex",
    "faiss_threads",
    "merge_top_k",
]

INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")
_FORMAT = "clipcourse-index-1"
_INDEX_FILE, _VECTORS_FILE, _META_FILE = "index.faiss", "vectors.npy", "meta.json"


class IndexFileError(ValueError):
    """A saved index is missing, truncated or corrupt."""


class IndexMismatchError(ValueError):
    """A saved index was built by another model or configuration than the one asked for."""


@dataclass(frozen=True)
class IndexConfig:
    """Which FAISS index, and its knobs (see the module docstring)."""

    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    nlist: int = 256
    nprobe: int = 16
    pq_m: int = 8  #: ``"ivfpq"`` only: sub-vectors per code (dim must divide by it); one byte each

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_matrix(x: torch.Tensor | np.ndarray, dim: int, what: str) -> np.ndarray:
    """``[N, dim]`` float32, C-contiguous, each row L2-normalised (zero rows stay zero)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape [N, {dim}], got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _make_faiss(dim: int, config: IndexConfig) -> faiss.Index:
    if config.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        return index
    quantizer = faiss.IndexFlatIP(dim)
    if config.kind == "ivfpq":
        if dim % config.pq_m:
            raise ValueError(f"ivfpq needs dim ({dim}) divisible by pq_m ({config.pq_m})")
        index = faiss.IndexIVFPQ(quantizer, dim, config.nlist, config.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, config.nlist, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = config.nprobe
    return index


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """FAISS's OpenMP threads set to ``n`` inside the block, restored after.

    One query at a time gains nothing from several threads, and on a small
    machine FAISS's OpenMP threads, spinning after a search, slow down torch's
    own threads (two OpenMP runtimes in one process): searches that answer one
    user at a time run best on one thread, as ann-benchmarks measures them.
    """
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def merge_top_k(scores: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` of candidate lists ``[Q, C]``: scores descending, ties by the lower id, id -1 (none) last."""
    scores = torch.where(ids < 0, torch.full_like(scores, -float("inf")), scores)
    big = torch.iinfo(torch.int64).max
    by_id = torch.argsort(torch.where(ids < 0, torch.full_like(ids, big), ids), dim=1, stable=True)
    scores, ids = scores.gather(1, by_id), ids.gather(1, by_id)
    order = torch.argsort(-scores, dim=1, stable=True)[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


class VectorIndex:
    """One FAISS index over normalised vectors, with ids aligned to ``metadata``.

    ``fingerprint`` names the model and config that made the vectors; it is
    saved beside the index and checked by :meth:`load`.
    """

    def __init__(self, dim: int, config: IndexConfig | None = None, *, fingerprint: str = "") -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.config = config or IndexConfig()
        self.fingerprint = fingerprint
        self.metadata: list[Any] = []
        self._index = _make_faiss(dim, self.config)
        self._vectors = np.empty((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.config.kind!r}, dim={self.dim}, size={len(self)})"

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def train(self, vectors: torch.Tensor | np.ndarray) -> VectorIndex:
        """Learn IVF's ``nlist`` cells from a sample (at least ``nlist`` vectors); a no-op for flat and HNSW."""
        x = _as_matrix(vectors, self.dim, "training vectors")
        if self.config.kind in ("ivf", "ivfpq") and len(x) < self.config.nlist:
            raise ValueError(f"IVF with nlist={self.config.nlist} needs at least that many training vectors, got {len(x)}")
        if not self.is_trained:
            self._index.train(x)
        return self

    def add(self, vectors: torch.Tensor | np.ndarray, metadata: Sequence[Any] | None = None) -> np.ndarray:
        """Append vectors ``[N, dim]`` (normalised here) and their metadata; returns their ids ``[N]``."""
        x = _as_matrix(vectors, self.dim, "vectors")
        if metadata is None:
            metadata = [None] * len(x)
        if len(metadata) != len(x):
            raise ValueError(f"got {len(x)} vectors but {len(metadata)} metadata entries")
        if not self.is_trained:
            raise ValueError("this IVF index is not trained: call index.train(sample_vectors) before add")
        start = len(self)
        self._index.add(x)
        self._vectors = np.concatenate([self._vectors, x]) if start else x.copy()
        self.metadata.extend(metadata)
        return np.arange(start, start + len(x), dtype=np.int64)

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change HNSW's ``efSearch`` or IVF's ``nprobe`` at query time (ignored by the other kinds)."""
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if ef_search is not None and self.config.kind == "hnsw":
            self._index.hnsw.efSearch = ef_search
        if nprobe is not None and self.config.kind in ("ivf", "ivfpq"):
            self._index.nprobe = min(nprobe, self.config.nlist)

    def _check_k(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > len(self):
            raise ValueError(f"k={k} is larger than the index ({len(self)} vectors)")

    def search(self, queries: torch.Tensor | np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top ``k`` by cosine similarity: ``(scores [Q, k] float32, ids [Q, k] int64)``, best first.

        An approximate index may find fewer than ``k`` results (IVF with a small
        ``nprobe``): the missing places have id -1 and score -inf.
        """
        self._check_k(k)
        q = _as_matrix(queries, self.dim, "queries")
        scores, ids = self._index.search(q, k)
        scores, ids = torch.from_numpy(scores), torch.from_numpy(ids)
        return merge_top_k(scores, ids, k)

    def vectors(self, ids: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """The stored normalised vectors (all, or those of ``ids``): ``[N, dim]``."""
        if ids is None:
            return torch.from_numpy(self._vectors)
        return torch.from_numpy(self._vectors[np.asarray(ids, dtype=np.int64)])

    def exact_scores(self, queries: torch.Tensor | np.ndarray, ids: torch.Tensor) -> torch.Tensor:
        """Exact cosine similarity of each query with its candidates ``ids [Q, C]`` (-inf where id is -1)."""
        q = torch.from_numpy(_as_matrix(queries, self.dim, "queries"))
        if ids.dim() != 2 or len(ids) != len(q):
            raise ValueError(f"ids must be [Q={len(q)}, C], got {list(ids.shape)}")
        cand = self.vectors(ids.clamp(min=0).reshape(-1)).view(*ids.shape, self.dim)
        scores = torch.einsum("qd,qcd->qc", q, cand)
        return torch.where(ids < 0, torch.full_like(scores, -float("inf")), scores)

    def memory_bytes(self) -> int:
        """Size of the serialised FAISS index (vectors plus graph or lists), without the re-rank copy."""
        return int(faiss.serialize_index(self._index).nbytes)

    # ------------------------------------------------------------------ disk

    def save(self, path: str | Path) -> Path:
        """Write the index folder atomically (a reader never sees half of it); metadata must be JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
        try:
            faiss.write_index(self._index, str(tmp / _INDEX_FILE))
            np.save(tmp / _VECTORS_FILE, self._vectors)
            meta = {
                "format": _FORMAT, "fingerprint": self.fingerprint, "dim": self.dim,
                "config": self.config.to_dict(), "size": len(self), "metadata": self.metadata,
                "sha256": {name: _sha256(tmp / name) for name in (_INDEX_FILE, _VECTORS_FILE)},
            }
            (tmp / _META_FILE).write_text(json.dumps(meta))
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path, *, fingerprint: str | None = None) -> VectorIndex:
        """Read a folder written by :meth:`save`; ``fingerprint``, when given, must match the saved one."""
        path = Path(path)
        try:
            meta = json.loads((path / _META_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise IndexFileError(f"{path} is not a readable index folder ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise IndexFileError(f"{path}/{_META_FILE} is not a {_FORMAT} file")
        try:
            for name, digest in meta["sha256"].items():
                if _sha256(path / name) != digest:
                    raise IndexFileError(f"{path}/{name} is corrupt (checksum mismatch)")
            if fingerprint is not None and meta.get("fingerprint") != fingerprint:
                raise IndexMismatchError(
                    f"{path} was built by model/config {meta.get('fingerprint')!r}, not {fingerprint!r}: rebuild it"
                )
            index = cls(int(meta["dim"]), IndexConfig(**meta["config"]), fingerprint=meta["fingerprint"])
            index._index = faiss.read_index(str(path / _INDEX_FILE))
            index._vectors = np.load(path / _VECTORS_FILE)
        except (IndexFileError, IndexMismatchError):
            raise
        except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise IndexFileError(f"{path} could not be read ({exc})") from exc
        index.metadata = list(meta["metadata"])
        if not (len(index) == len(index.metadata) == len(index._vectors) == meta["size"]):
            raise IndexFileError(f"{path}: index, vectors and metadata disagree on the number of items")
        return index


class ShardedIndex:
    """Several :class:`VectorIndex` shards behind one ``search``: each returns its top k, then one merge.

    Shard ``s`` holds global ids ``offsets[s] .. offsets[s] + len(shard) - 1``.
    With exact shards the merged top k equals one exact index's top k (ties by the
    lower id). Shards are searched in threads (FAISS releases the GIL), as one
    process per shard behind a front end would be.
    """

    def __init__(self, shards: Sequence[VectorIndex], *, parallel: bool = True) -> None:
        if not shards:
            raise ValueError("a ShardedIndex needs at least one shard")
        if len({s.dim for s in shards}) != 1:
            raise ValueError("all shards must have the same dimension")
        self.shards = list(shards)
        self.offsets = np.cumsum([0] + [len(s) for s in shards[:-1]]).tolist()
        self.parallel = parallel
        self.dim = shards[0].dim

    @classmethod
    def build(
        cls, vectors: torch.Tensor | np.ndarray, n_shards: int, config: IndexConfig | None = None,
        metadata: Sequence[Any] | None = None, *, fingerprint: str = "",
    ) -> ShardedIndex:
        """Split ``vectors`` into ``n_shards`` contiguous parts, one index each (IVF shards train on their part)."""
        n = len(vectors)
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or not 1 <= n_shards <= n:
            raise ValueError(f"n_shards must be between 1 and the number of vectors ({n}), got {n_shards!r}")
        bounds = np.linspace(0, n, n_shards + 1).astype(int)
        shards = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            shard = VectorIndex(int(vectors.shape[1]), config, fingerprint=fingerprint)
            shard.train(vectors[lo:hi])
            shard.add(vectors[lo:hi], None if metadata is None else list(metadata[lo:hi]))
            shards.append(shard)
        return cls(shards)

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def search(self, queries: torch.Tensor | np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`VectorIndex.search` over the union of the shards."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self):
            raise ValueError(f"k must be between 1 and the index size ({len(self)}), got {k!r}")

        def one(s: int) -> tuple[torch.Tensor, torch.Tensor]:
            scores, ids = self.shards[s].search(queries, min(k, len(self.shards[s])))
            return scores, torch.where(ids < 0, ids, ids + self.offsets[s])

        if self.parallel and len(self.shards) > 1:
            with ThreadPoolExecutor(len(self.shards)) as pool:
                parts = list(pool.map(one, range(len(self.shards))))
        else:
            parts = [one(s) for s in range(len(self.shards))]
        return merge_top_k(torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1), k)

    def metadata(self, i: int) -> Any:
        """The metadata of global id ``i``."""
        s = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.shards[s].metadata[i - self.offsets[s]]
