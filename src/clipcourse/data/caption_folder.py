"""Real image–caption data for the optional Colab paths.

Two sources, both turned into the same thing: a list of images, each with one
or more captions, served as ``(image, caption)`` pairs for training and as
unique images plus captions for retrieval.

* :class:`CaptionFolder`: a folder of image files plus a CSV with columns
  ``image,caption`` (several rows per image allowed, as in Flickr8k's
  ``captions.txt``). Decoded with torchvision, resized to a square.
* :func:`load_flickr8k`: a Flickr8k-style caption set from the Hugging Face
  Hub via the ``datasets`` library (online only; in the ``colab`` extra, ``pip install datasets``).
  :func:`parse_caption_rows` turns its rows into ``(image, captions)`` pairs,
  whatever the caption columns are called.

Nothing here runs on the default (offline) path of the course.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from clipcourse.encoding import as_float_images

__all__ = ["CaptionFolder", "load_flickr8k", "parse_caption_rows"]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


def _to_float_image(image: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 ``[C, H, W]`` (any C) -> float ``[3, S, S]`` in [0, 1]: RGB, resized, centre-cropped."""
    from torchvision.transforms.v2 import functional as TF

    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    elif image.shape[0] == 4:
        image = image[:3]  # drop alpha
    image = TF.resize(image, image_size, antialias=True)  # shorter side to image_size
    image = TF.center_crop(image, [image_size, image_size])
    return as_float_images(image)


class CaptionFolder(torch.utils.data.Dataset):
    """Images in ``root`` with captions from a CSV (columns ``image``, ``caption``).

    ``dataset[i]`` is the i-th caption row: ``dict(image=float [3, S, S],
    caption=str, index=i, image_index=j)``, where ``j`` indexes
    :attr:`image_files` (several captions share an image). ``transform``, if
    given, is applied to the float image.
    """

    def __init__(
        self,
        root: str | Path,
        captions_csv: str | Path | None = None,
        *,
        image_size: int = 224,
        transform=None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        csv_path = Path(captions_csv) if captions_csv is not None else self.root / "captions.csv"
        if not csv_path.is_file():
            raise FileNotFoundError(f"captions file {csv_path} does not exist")
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.transform = transform

        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            missing = {"image", "caption"} - set(columns)
            if missing:
                raise ValueError(f"{csv_path} needs columns 'image' and 'caption'; missing {sorted(missing)}, found {columns}")
            rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
        rows = [r for r in rows if r["image"] and r["caption"]]
        if not rows:
            raise ValueError(f"{csv_path} has no (image, caption) rows")

        self.image_files: list[str] = []
        index: dict[str, int] = {}
        self.captions: list[str] = []
        self.caption_image: list[int] = []
        for r in rows:
            if r["image"] not in index:
                index[r["image"]] = len(self.image_files)
                self.image_files.append(r["image"])
            self.captions.append(r["caption"])
            self.caption_image.append(index[r["image"]])
        missing_files = [name for name in self.image_files if not (self.root / name).is_file()]
        if missing_files:
            raise FileNotFoundError(
                f"{len(missing_files)} image(s) listed in {csv_path.name} are not in {self.root}, e.g. {missing_files[:3]}"
            )

    def __len__(self) -> int:
        return len(self.captions)

    def load_image(self, image_index: int) -> torch.Tensor:
        """Decode and resize one image: float ``[3, S, S]`` in [0, 1]."""
        from torchvision.io import ImageReadMode, decode_image

        path = self.root / self.image_files[image_index]
        try:
            image = decode_image(str(path), mode=ImageReadMode.RGB)
        except RuntimeError as exc:
            raise ValueError(f"could not decode image {path}: {exc}") from exc
        return _to_float_image(image, self.image_size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} captions")
        i = int(i) % len(self)
        j = self.caption_image[i]
        image = self.load_image(j)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "caption": self.captions[i], "index": i, "image_index": j}

    def captions_of(self, image_index: int) -> list[str]:
        return [c for c, j in zip(self.captions, self.caption_image) if j == image_index]

    def images(self) -> torch.Tensor:
        """Every unique image, stacked: float ``[N, 3, S, S]`` (for retrieval evaluation)."""
        return torch.stack([self.load_image(j) for j in range(len(self.image_files))])


def _captions_of_row(row: Mapping[str, Any]) -> list[str]:
    """The captions of one dataset row, whatever the schema calls them."""
    numbered = sorted(
        (k for k in row if re.fullmatch(r"(caption|sentence)_?\d+", k)), key=lambda k: int(re.sub(r"\D", "", k))
    )
    if numbered:
        values: Iterable[Any] = [row[k] for k in numbered]
    else:
        key = next((k for k in ("captions", "caption", "sentences", "raw", "text") if k in row), None)
        if key is None:
            raise ValueError(f"row has no caption column; columns are {sorted(row)}")
        values = row[key]
        if isinstance(values, str):
            values = [values]
    out = []
    for v in values:
        if isinstance(v, Mapping):  # Karpathy-style {"raw": "..."} entries
            v = v.get("raw", v.get("caption", ""))
        if isinstance(v, str) and v.strip():
            out.append(v.strip())
    return out


def parse_caption_rows(
    rows: Iterable[Mapping[str, Any]], image_key: str = "image"
) -> list[tuple[Any, list[str]]]:
    """``(image, captions)`` per row of a Flickr-style caption set.

    Handles ``caption_0 … caption_4`` columns (e.g. ``jxie/flickr8k``), a list
    column (``captions``/``caption``/``sentences``, items being strings or
    ``{"raw": ...}``), or one caption string per row. Rows with no caption
    are skipped.
    """
    out = []
    for i, row in enumerate(rows):
        if image_key not in row:
            raise ValueError(f"row {i} has no {image_key!r} column; columns are {sorted(row)}")
        captions = _captions_of_row(row)
        if captions:
            out.append((row[image_key], captions))
    if not out:
        raise ValueError("no rows with captions")
    return out


def load_flickr8k(
    split: str = "test",
    name: str = "jxie/flickr8k",
    *,
    image_size: int = 224,
    limit: int | None = None,
) -> tuple[torch.Tensor, list[list[str]]]:
    """Flickr8k (or a similar set) from the Hugging Face Hub: images ``[N, 3, S, S]`` and captions per image.

    Needs the network and the ``datasets`` package (``pip install datasets``);
    the course's default path never calls it.
    """
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            "load_flickr8k needs the Hugging Face `datasets` package: run `pip install datasets` "
            "(on Colab: `!pip install -q datasets`)"
        ) from exc
    from torchvision.transforms.v2 import functional as TF

    data = datasets.load_dataset(name, split=split)
    if limit is not None:
        data = data.select(range(min(int(limit), len(data))))
    pairs = parse_caption_rows(data)
    images = []
    for image, _ in pairs:
        tensor = TF.pil_to_tensor(image.convert("RGB")) if hasattr(image, "convert") else torch.as_tensor(image)
        images.append(_to_float_image(tensor, image_size))
    return torch.stack(images), [captions for _, captions in pairs]


