"""The search service in-process (FastAPI's TestClient): results, bad input, metrics, a broken index."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient

from clipcourse.gallery import caption_index, shapes_gallery
from clipcourse.index import IndexConfig, IndexFileError, VectorIndex
from clipcourse.search import SearchEngine
from clipcourse.service import ServiceLimits, create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from clipcourse.course_model import mini_clip

    model = mini_clip(progress=False)
    gallery = shapes_gallery(model, 400, cache_dir=tmp_path_factory.mktemp("cache"))
    index = VectorIndex(gallery.features.shape[1], IndexConfig("flat"))
    index.add(gallery.features, gallery.metadata())
    engine = SearchEngine(model, index, text_index=caption_index(model, gallery))
    app = create_app(engine, gallery.images, limits=ServiceLimits(max_query_chars=50, max_k=20))
    with TestClient(app) as c:
        yield c


def test_page_and_health(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text and "/search?" in page.text
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == 400


def test_text_search_returns_matching_captions(client):
    r = client.get("/search", params={"q": "a red circle", "k": 5})
    assert r.status_code == 200
    data = r.json()
    assert len(data["ids"]) == len(data["scores"]) == len(data["captions"]) == len(data["thumbnails"]) == 5
    assert data["scores"] == sorted(data["scores"], reverse=True)
    assert all("red" in c and "circle" in c for c in data["captions"][:3]), data["captions"]
    thumb = client.get(data["thumbnails"][0])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert thumb.content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"q": "", "k": 5}, 422, "empty"),
        ({"q": "   ", "k": 5}, 422, "empty"),
        ({"q": "red " * 20, "k": 5}, 422, "limit"),
        ({"q": "red", "k": 0}, 422, "between 1 and 20"),
        ({"q": "red", "k": 21}, 422, "between 1 and 20"),
        ({"q": "red", "k": "many"}, 422, ""),
    ],
)
def test_bad_queries_get_clear_errors_and_the_service_keeps_serving(client, params, status, words):
    r = client.get("/search", params=params)
    assert r.status_code == status
    assert words in str(r.json()["detail"])
    assert client.get("/search", params={"q": "a blue square", "k": 3}).status_code == 200


def test_image_upload_search(client):
    png = client.get("/thumb/7.png").content
    r = client.post("/search/image", files={"file": ("x.png", png, "image/png")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert 7 in data["images"]["ids"]
    assert len(data["captions"]["captions"]) == 3 and "thumbnails" not in data["captions"]
    bad = client.post("/search/image", files={"file": ("x.png", b"not an image", "image/png")}, data={"k": "3"})
    assert bad.status_code == 415 and "not an image" in bad.json()["detail"]
    big = client.post("/search/image", files={"file": ("x.png", b"0" * 2_000_001, "image/png")}, data={"k": "3"})
    assert big.status_code == 413
    assert client.post("/search/image", data={"k": "3"}).status_code == 422


def test_unknown_thumbnail(client):
    assert client.get("/thumb/400.png").status_code == 404
    assert client.get("/thumb/-1.png").status_code == 404


def test_metrics_count_requests_latency_and_cache(client):
    before = client.get("/metrics").json()
    client.get("/search", params={"q": "a green triangle", "k": 2})
    client.get("/search", params={"q": "a green triangle", "k": 2})
    m = client.get("/metrics").json()
    assert m["requests"]["/search"] >= before["requests"].get("/search", 0) + 2
    assert m["cache"]["hits"] >= 1 and 0 < m["cache"]["hit_rate"] <= 1
    assert m["latency"]["/search"]["p50_ms"] > 0
    assert m["errors"].get("422", 0) >= 0


def _saved_index(path, *, fingerprint="model-a", corrupt=False):
    index = VectorIndex(64, fingerprint=fingerprint)
    index.add(torch.randn(10, 64), [{"caption": "x"}] * 10)
    index.save(path)
    if corrupt:
        (path / "index.faiss").write_bytes(b"garbage")
    return path


@pytest.mark.parametrize(("corrupt", "words"), [(True, "corrupt"), (False, "built by model/config")])
def test_broken_or_foreign_index_answers_503_with_the_reason(tmp_path, corrupt, words):
    from clipcourse.service import default_engine

    path = _saved_index(tmp_path / "idx", corrupt=corrupt)
    app = create_app(build=lambda: default_engine(50, cache_dir=tmp_path / "cache", index_path=path))
    with TestClient(app) as c:
        health = c.get("/health")
        assert health.status_code == 503
        assert words in health.json()["detail"]
        r = c.get("/search", params={"q": "red", "k": 3})
        assert r.status_code == 503 and "not available" in r.json()["detail"] and words in r.json()["detail"]
        assert c.get("/thumb/1.png").status_code == 503
        assert c.get("/metrics").status_code == 200
    if corrupt:
        with pytest.raises(IndexFileError):
            VectorIndex.load(path)
