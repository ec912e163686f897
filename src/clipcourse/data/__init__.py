"""Data for the course: the embedded Shapes world and SimCLR-style augmentation.

``from clipcourse.data import ShapesWorld`` is all most lessons need; see
:mod:`clipcourse.data.shapes` for the design and :mod:`clipcourse.data.augment`
for the two-view augmentation. The public names are those modules' ``__all__``.
"""

from clipcourse.data import augment, shapes
from clipcourse.data.augment import *  # noqa: F403
from clipcourse.data.shapes import *  # noqa: F403

__all__ = [*shapes.__all__, *augment.__all__]
