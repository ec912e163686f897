"""The search service: a FastAPI app over a :class:`~clipcourse.search.SearchEngine`, served by uvicorn.

``python -m clipcourse.service`` (or ``make serve``) starts it on 127.0.0.1,
port ``$PORT`` (default 8000), over the embedded Shapes world: the gallery's
embeddings and its HNSW index are built on the first start and cached
(:mod:`clipcourse.gallery`), so later starts take a few seconds.

Endpoints:

* ``GET /``: the page (type a query, see the images and their scores);
* ``GET /search?q=...&k=...``: text→image, JSON ``ids, scores, captions, thumbnails``;
* ``POST /search/image`` (multipart ``file``, form ``k``): image→image and image→text;
* ``GET /thumb/{id}.png``: a gallery image, enlarged;
* ``GET /health``: 200 when serving, 503 (with the reason) when the index could not be loaded;
* ``GET /metrics``: request counts, errors, latency percentiles per endpoint, cache hit rate.

Bad input gets a JSON ``{"detail": ...}`` naming the problem: 422 for an empty or
over-long query or ``k`` out of range, 413 for an oversized upload, 415 for an
upload that is not an image, 404 for an unknown thumbnail, 503 while there is no
usable index. Nothing a client sends stops the service.
"""


import argparse
import io
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipcourse.latency import percentile
from clipcourse.search import SearchEngine, SearchResponse

__all__ = ["ServiceLimits", "create_app", "default_engine", "main"]


@dataclass(frozen=True)
class ServiceLimits:
    max_query_chars: int = 200
    max_k: int = 100
    max_upload_bytes: int = 2_000_000
    thumb_size: int = 96


@dataclass
class _Metrics:
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies: dict[str, deque] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=10_000)))

    def record(self, route: str, status: int, ms: float) -> None:
        self.requests[route] += 1
        self.latencies[route].append(ms)
        if status >= 400:
            self.errors[str(status)] += 1

    def summary(self, engine: SearchEngine | None) -> dict[str, Any]:
        latency = {
            route: {f"p{q}_ms": round(percentile(list(v), q), 3) for q in (50, 95, 99)}
            for route, v in self.latencies.items() if v
        }
        cache = None
        if engine is not None:
            c = engine.cache
            cache = {"hits": c.hits, "misses": c.misses, "hit_rate": c.hit_rate, "size": len(c), "capacity": c.capacity}
        return {"requests": dict(self.requests), "errors": dict(self.errors), "latency": latency, "cache": cache}


def default_engine(
    n: int | None = None, *, cache_dir: str | Path | None = None, index_path: str | Path | None = None,
) -> tuple[SearchEngine, torch.Tensor]:
    """The course model over ``n`` Shapes-world images (``$CLIPCOURSE_SEARCH_N``, default 10,000): HNSW + exact re-rank.

    ``index_path``: serve a folder written by :meth:`VectorIndex.save` instead of the cached index; it must
    have been built from this gallery and model (else :class:`~clipcourse.index.IndexMismatchError`).
    """
    from clipcourse.course_model import mini_clip
    from clipcourse.gallery import caption_index, gallery_index, index_fingerprint, shapes_gallery
    from clipcourse.index import IndexConfig, VectorIndex

    n = n or int(os.environ.get("CLIPCOURSE_SEARCH_N", "10000"))
    model = mini_clip(progress=False)
    gallery = shapes_gallery(model, n, cache_dir=cache_dir)
    config = IndexConfig("hnsw", ef_search=64)
    if index_path is not None:
        index = VectorIndex.load(index_path, fingerprint=index_fingerprint(gallery, config))
    else:
        index = gallery_index(gallery, config, cache_dir=cache_dir)
    engine = SearchEngine(model, index, text_index=caption_index(model, gallery), rerank=4)
    return engine, gallery.images


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shapes-world search</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}
#results{display:flex;flex-wrap:wrap;gap:12px;margin-top:1em}
figure{margin:0;width:120px;text-align:center;font-size:12px}
img{width:96px;height:96px;image-rendering:pixelated;border:1px solid #ccc}
#error{color:#b00} .score{color:#555}
</style></head>
<body>
<h1>Search Shapes world</h1>
<form id="form">
  <input id="q" name="q" size="40" placeholder="a big red circle at the top" autofocus>
  <input id="k" name="k" type="number" value="12" min="1" max="__MAX_K__">
  <button id="go" type="submit">Search</button>
</form>
<p>or search by image: <input id="file" type="file" accept="image/*"></p>
<p id="status"></p><p id="error"></p>
<div id="results"></div>
<script>
const $ = (id) => document.getElementById(id);
function show(data) {
  const box = $("results"); box.innerHTML = "";
  data.ids.forEach((id, i) => {
    const fig = document.createElement("figure"); fig.className = "result"; fig.dataset.id = id;
    const img = document.createElement("img"); img.src = data.thumbnails[i]; img.alt = data.captions[i];
    const cap = document.createElement("figcaption"); cap.className = "caption"; cap.textContent = data.captions[i];
    const sc = document.createElement("div"); sc.className = "score"; sc.textContent = data.scores[i].toFixed(3);
    fig.append(img, cap, sc); box.append(fig);
  });
  $("status").textContent = data.ids.length + " results in " + data.timings_ms.total_ms.toFixed(1) + " ms";
}
async function handle(resp) {
  const data = await resp.json();
  if (!resp.ok) { $("error").textContent = data.detail; $("results").innerHTML = ""; return null; }
  $("error").textContent = ""; return data;
}
$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const params = new URLSearchParams({q: $("q").value, k: $("k").value});
  const data = await handle(await fetch("/search?" + params));
  if (data) show(data);
});
$("file").addEventListener("change", async () => {
  const body = new FormData(); body.append("file", $("file").files[0]); body.append("k", $("k").value);
  const data = await handle(await fetch("/search/image", {method: "POST", body}));
  if (data) show(data.images);
});
</script></body></html>
"""


def _png(image: torch.Tensor, size: int) -> bytes:
    from PIL import Image

    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((size, size), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _decode_upload(data: bytes, size: int) -> torch.Tensor:
    """Bytes of any image PIL reads -> uint8 ``[1, 3, size, size]``; ValueError when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as pil:
            pil = pil.convert("RGB").resize((size, size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"the upload is not an image PIL can read ({type(exc).__name__})") from exc
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)[None]


def create_app(
    engine: SearchEngine | None = None, images: torch.Tensor | None = None, *,
    build: Callable[[], tuple[SearchEngine, torch.Tensor]] | None = None, limits: ServiceLimits | None = None,
):
    """The FastAPI app. Pass a ready ``engine`` and its gallery ``images [N, 3, H, W]`` (tests), or
    ``build`` (called once at start-up; default :func:`default_engine`). A build that fails leaves the
    app up and answering 503 with the reason (a corrupt index, one from another model)."""
    from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    limits = limits or ServiceLimits()
    state: dict[str, Any] = {"engine": engine, "images": images, "error": None}
    metrics = _Metrics()
    lock = threading.Lock()  # one search at a time: the LRU cache and torch are not shared safely

    @asynccontextmanager
    async def lifespan(app):
        if state["engine"] is None:
            try:
                state["engine"], state["images"] = (build or default_engine)()
            except Exception as exc:  # keep serving /health and /metrics with the reason
                state["error"] = f"{type(exc).__name__}: {exc}"
        yield

    app = FastAPI(title="Shapes-world search", lifespan=lifespan)

    @app.middleware("http")
    async def timing(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.record(name, response.status_code, (time.perf_counter() - t0) * 1000)
        return response

    def ready() -> SearchEngine:
        if state["engine"] is None:
            raise HTTPException(503, f"the search index is not available: {state['error'] or 'still loading'}")
        return state["engine"]

    def check_k(k: int) -> None:
        if not 1 <= k <= min(limits.max_k, len(ready().index)):
            raise HTTPException(422, f"k must be between 1 and {min(limits.max_k, len(ready().index))}, got {k}")

    def as_json(resp: SearchResponse, thumbs: bool = True) -> dict[str, Any]:
        hits = resp.hits[0]
        out = {
            "ids": [h.id for h in hits], "scores": [round(h.score, 6) for h in hits],
            "captions": [h.metadata["caption"] for h in hits], "timings_ms": resp.times.as_dict(),
            "cached": resp.cache_hits > 0,
        }
        if thumbs:
            out["thumbnails"] = [f"/thumb/{h.id}.png" for h in hits]
        return out

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _PAGE.replace("__MAX_K__", str(limits.max_k))

    @app.get("/search")
    async def search(q: str = Query("", description="the text query"), k: int = Query(12)) -> dict[str, Any]:
        q = q.strip()
        if not q:
            raise HTTPException(422, "the query q is empty: type what to look for, e.g. ?q=red+circle")
        if len(q) > limits.max_query_chars:
            raise HTTPException(422, f"the query is {len(q)} characters long; the limit is {limits.max_query_chars}")
        engine = ready()
        check_k(k)
        with lock:
            resp = engine.search_text([q], k)
        return {"query": q, "k": k, **as_json(resp)}

    @app.post("/search/image")
    async def search_image(file: UploadFile = File(...), k: int = Form(12)) -> dict[str, Any]:  # noqa: B008
        engine = ready()
        check_k(k)
        data = await file.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, f"the upload is larger than {limits.max_upload_bytes} bytes")
        try:
            image = _decode_upload(data, int(state["images"].shape[-1]))
        except ValueError as exc:
            raise HTTPException(415, str(exc)) from exc
        with lock:
            images = engine.search_image(image, k)
            texts = engine.search_image(image, min(k, len(engine.text_index)), target="text") if engine.text_index else None
        return {"k": k, "images": as_json(images), "captions": None if texts is None else as_json(texts, thumbs=False)}

    @lru_cache(maxsize=4096)
    def thumb_bytes(i: int) -> bytes:
        return _png(state["images"][i], limits.thumb_size)

    @app.get("/thumb/{item_id}.png")
    async def thumb(item_id: int) -> Response:
        ready()
        if not 0 <= item_id < len(state["images"]):
            raise HTTPException(404, f"no image with id {item_id} (ids run from 0 to {len(state['images']) - 1})")
        return Response(thumb_bytes(item_id), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/health")
    async def health():
        engine = state["engine"]
        if engine is None:
            return JSONResponse({"status": "unavailable", "detail": state["error"] or "loading"}, status_code=503)
        return {"status": "ok", "items": len(engine.index), "index": getattr(engine.index, "config", None) and engine.index.config.kind}

    @app.get("/metrics")
    async def get_metrics() -> dict[str, Any]:
        return metrics.summary(state["engine"])

    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m clipcourse.service [--host 127.0.0.1] [--port $PORT or 8000] [--n 10000]``."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve text and image search over Shapes world.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--n", type=int, default=None, help="gallery size (default $CLIPCOURSE_SEARCH_N or 10000)")
    parser.add_argument("--cache-dir", default=None, help="where the embeddings and index are cached (default the course cache)")
    parser.add_argument("--index", default=None, help="serve this saved index folder (checked against the model)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch and FAISS threads per request (default 1: a request is one query; add workers, not threads)",
    )
    args = parser.parse_args(argv)
    import faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    app = create_app(build=lambda: default_engine(args.n, cache_dir=args.cache_dir, index_path=args.index))
    print(f"Shapes-world search on http://{args.host}:{args.port}/ (the first start builds and caches the index)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
