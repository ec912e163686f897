"""Real-data paths, tested offline: a captioned image folder and Flickr-style row parsing."""

from __future__ import annotations

import builtins
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from clipcourse.data.caption_folder import CaptionFolder, load_flickr8k, parse_caption_rows


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 30), dtype=np.uint8), mode="L").save(tmp_path / "b.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 4), dtype=np.uint8), mode="RGBA").save(tmp_path / "c.png")
    with open(tmp_path / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows([["a.jpg", "a dog on grass"], ["a.jpg", "a brown dog"], ["b.png", "a grey cat"],
                     ["c.png", "a tiny icon"], ["c.png", "  "]])  # blank caption rows are dropped
    return tmp_path


def test_caption_folder_items(folder):
    ds = CaptionFolder(folder, image_size=16)
    assert len(ds) == 4 and ds.image_files == ["a.jpg", "b.png", "c.png"]
    item = ds[1]
    assert item["caption"] == "a brown dog" and item["image_index"] == 0 and item["index"] == 1
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert ds[2]["image"].shape == (3, 16, 16)  # greyscale becomes RGB
    assert ds[-1]["image"].shape == (3, 16, 16)  # RGBA drops alpha
    assert ds.captions_of(0) == ["a dog on grass", "a brown dog"]
    assert ds.images().shape == (3, 3, 16, 16)
    with pytest.raises(IndexError):
        ds[4]


def test_caption_folder_works_with_a_dataloader(folder):
    loader = torch.utils.data.DataLoader(CaptionFolder(folder, image_size=8), batch_size=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 8, 8) and len(batch["caption"]) == 2


def test_caption_folder_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="captions file"):
        CaptionFolder(folder, folder / "nope.csv")
    (folder / "bad.csv").write_text("file,text\na.jpg,x\n")
    with pytest.raises(ValueError, match="columns"):
        CaptionFolder(folder, folder / "bad.csv")
    (folder / "missing.csv").write_text("image,caption\nzzz.jpg,x\n")
    with pytest.raises(FileNotFoundError, match="zzz.jpg"):
        CaptionFolder(folder, folder / "missing.csv")
    (folder / "empty.csv").write_text("image,caption\n")
    with pytest.raises(ValueError, match="no"):
        CaptionFolder(folder, folder / "empty.csv")
    (folder / "broken.jpg").write_bytes(b"not an image")
    (folder / "broken.csv").write_text("image,caption\nbroken.jpg,x\n")
    with pytest.raises(ValueError, match="decode"):
        CaptionFolder(folder, folder / "broken.csv")[0]


def test_parse_numbered_caption_columns():
    rows = [{"image": "img0", **{f"caption_{i}": f"c{i}" for i in range(5)}},
            {"image": "img1", "caption_10": "late", "caption_2": "early"}]
    assert parse_caption_rows(rows) == [("img0", ["c0", "c1", "c2", "c3", "c4"]), ("img1", ["early", "late"])]


def test_parse_list_and_string_columns():
    rows = [
        {"image": 1, "caption": ["a", " b ", ""]},
        {"image": 2, "sentences": [{"raw": "x"}, {"raw": "y"}]},
        {"image": 3, "caption": "single"},
        {"image": 4, "caption": ""},  # no caption: skipped
    ]
    assert parse_caption_rows(rows) == [(1, ["a", "b"]), (2, ["x", "y"]), (3, ["single"])]


def test_parse_errors():
    with pytest.raises(ValueError, match="no 'image' column"):
        parse_caption_rows([{"caption": "x"}])
    with pytest.raises(ValueError, match="no caption column"):
        parse_caption_rows([{"image": 1, "label": 3}])
    with pytest.raises(ValueError, match="no rows"):
        parse_caption_rows([])


def test_flickr8k_without_datasets_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match="pip install datasets"):
        load_flickr8k()
