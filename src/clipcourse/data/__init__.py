"""Data for the course: the embedded Shapes world and SimCLR-style augmentation.

``from clipcourse.data import ShapesWorld`` is all most lessons need; see
:mod:`clipcourse.data.shapes` for the design and :mod:`clipcourse.data.augment`
for the two-view augmentation.
"""

from clipcourse.data.augment import GaussianNoise, TwoViews, simclr_augment, two_view_batch
from clipcourse.data.shapes import (
    ALL_CLASSES,
    ATTRIBUTE_VALUES,
    ATTRIBUTES,
    COLOUR_RGB,
    COLOURS,
    DEFAULT_HELD_OUT,
    POSITIONS,
    SHAPES,
    SIZES,
    SPLIT_SIZES,
    SYNONYMS,
    Caption,
    ShapeAttributes,
    ShapesDataset,
    ShapesSplit,
    ShapesWorld,
    captions_for,
    class_name,
    images_per_second,
    matches_all,
    relevance,
)

__all__ = [
    "ALL_CLASSES",
    "ATTRIBUTES",
    "ATTRIBUTE_VALUES",
    "COLOURS",
    "COLOUR_RGB",
    "DEFAULT_HELD_OUT",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "SPLIT_SIZES",
    "SYNONYMS",
    "Caption",
    "GaussianNoise",
    "ShapeAttributes",
    "ShapesDataset",
    "ShapesSplit",
    "ShapesWorld",
    "TwoViews",
    "captions_for",
    "class_name",
    "images_per_second",
    "matches_all",
    "relevance",
    "simclr_augment",
    "two_view_batch",
]
