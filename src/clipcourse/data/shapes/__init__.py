"""Shapes world: the course's embedded image–caption dataset.

Every chapter needs image–text pairs that are (1) available offline, (2) cheap
to generate on a laptop CPU, (3) learnable in about a minute, and (4) come with
exact ground truth. A procedurally drawn world gives all four: each image shows
one or more shapes with four attributes (colour, shape, size, position), and
each image has several captions written from templates and synonyms, like the
five captions per image in COCO.

Two ideas from the literature shape the design:

* **Held-out combinations** (as in ShapeWorld and CLEVR-CoGenT): some
  colour×shape pairs never occur in training images or captions, although each
  colour and each shape does. Zero-shot accuracy on them measures
  compositional generalisation, not memorisation.
* **Graded relevance**: a caption can mention only some attributes, and an image
  can match some of them. :func:`relevance` counts the matches, which gives
  retrieval metrics with several relevant items (and NDCG) honest ground truth.

Everything is deterministic for a seed and vectorised over the batch in NumPy,
so tens of thousands of images per second render on a single core.

The package's files say what they hold: :mod:`.vocabulary` (colours, shapes,
sizes, positions, synonyms, classes, one object's attributes), :mod:`.captions`
(captions and relevance), :mod:`.render` (drawing images), :mod:`.world`
(``ShapesWorld`` and its splits) and :mod:`.dataset` (a torch ``Dataset`` view
and the rendering benchmark). Every public name is importable from here and
from :mod:`clipcourse.data`.
"""

from clipcourse.data.shapes import captions, dataset, render, vocabulary, world  # noqa: F401  (submodules)
from clipcourse.data.shapes.captions import *  # noqa: F403
from clipcourse.data.shapes.dataset import *  # noqa: F403
from clipcourse.data.shapes.vocabulary import *  # noqa: F403
from clipcourse.data.shapes.world import *  # noqa: F403

__all__ = [*vocabulary.__all__, *captions.__all__, *world.__all__, *dataset.__all__]
