"""Plotting helpers shared by the lessons.

Each function draws one kind of figure, stands alone (no shared state), takes
an optional ``ax`` to draw into, and returns the ``Axes`` (or ``Figure``) so a
lesson can add to it. Nothing here calls ``plt.show()``. Tensors and arrays
are both accepted. :func:`html_table` renders result tables (HTML, unlike a
Markdown table, renders the same in Jupyter, Colab and the built book).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from clipcourse.encoding import as_float_images

__all__ = [
    "confusion_matrix",
    "embedding_scatter",
    "html_table",
    "image_grid",
    "loss_curve",
    "project_2d",
    "similarity_heatmap",
]


def _numpy(x: torch.Tensor | np.ndarray | Sequence, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().float().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be numeric (a tensor, array or list), got {type(x).__name__}"
        ) from None


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def similarity_heatmap(
    sim: torch.Tensor | np.ndarray,
    *,
    ax: Axes | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    annotate: bool = False,
    vmin: float | None = -1.0,
    vmax: float | None = 1.0,
    cmap: str = "RdBu_r",
) -> Axes:
    """A similarity matrix as an image: rows are queries, columns are keys.

    A diverging colour map centred on 0 makes positive pairs (a bright
    diagonal, when rows and columns are paired) stand out from negatives.
    ``annotate`` writes each value in its cell (for small matrices).
    """
    values = _numpy(sim, "sim")
    if values.ndim != 2:
        raise ValueError(f"sim must be a 2-D matrix, got shape {values.shape}")
    for labels, size, name in (
        (row_labels, values.shape[0], "row_labels"),
        (col_labels, values.shape[1], "col_labels"),
    ):
        if labels is not None and len(labels) != size:
            raise ValueError(f"{name} has {len(labels)} entries for {size} {name.split('_')[0]}s")
    ax = _axes(ax, (5, 4.5))
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), col_labels, rotation=90)
    if annotate:
        for (i, j), value in np.ndenumerate(values):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    if title:
        ax.set_title(title)
    return ax


def loss_curve(
    history: Sequence[float] | torch.Tensor | np.ndarray,
    *,
    ax: Axes | None = None,
    smooth: int = 1,
    label: str | None = None,
    title: str | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
) -> Axes:
    """A training curve; ``smooth > 1`` overlays a moving average (the raw curve stays, faded).

    Call it again with the same ``ax`` to compare runs (pass ``label`` to get a legend).
    """
    values = _numpy(history, "history").reshape(-1)
    if len(values) == 0:
        raise ValueError("history is empty: nothing to plot")
    if smooth < 1:
        raise ValueError(f"smooth must be at least 1, got {smooth}")
    ax = _axes(ax, (6, 3.5))
    steps = np.arange(1, len(values) + 1)
    if smooth > 1 and len(values) >= smooth:
        (raw,) = ax.plot(steps, values, alpha=0.3)
        averaged = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
        ax.plot(steps[smooth - 1 :], averaged, color=raw.get_color(), label=label)
    else:
        ax.plot(steps, values, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label is not None:
        ax.legend()
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def project_2d(
    embeddings: torch.Tensor | np.ndarray, method: str = "pca", seed: int = 0
) -> np.ndarray:
    """``[N, D]`` embeddings -> ``[N, 2]`` points with scikit-learn's PCA or t-SNE.

    PCA is linear and fast, and distances in it mean something; t-SNE shows
    clusters better but distorts distances between them.
    """
    values = _numpy(embeddings, "embeddings")
    if values.ndim != 2 or len(values) < 2:
        raise ValueError(f"embeddings must be [N, D] with N >= 2, got shape {values.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA

        if values.shape[1] < 2:
            raise ValueError("PCA to 2-D needs embeddings with at least 2 dimensions")
        return PCA(n_components=2, random_state=seed).fit_transform(values)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(values) - 1) / 3)
        return TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(values)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


def embedding_scatter(
    points: torch.Tensor | np.ndarray,
    labels: Sequence | torch.Tensor | np.ndarray,
    *,
    ax: Axes | None = None,
    label_names: Sequence[str] | None = None,
    palette: Mapping[str, str | tuple[float, ...]] | None = None,
    title: str | None = None,
    size: float = 12,
) -> Axes:
    """2-D points coloured by a label (class index or name), with a legend.

    ``points`` is ``[N, 2]`` (use :func:`project_2d` first for wider
    embeddings). ``label_names`` maps integer labels to names; ``palette``
    maps names to matplotlib colours (e.g. ``{"red": "red"}`` so colour labels
    are drawn in their own colour); otherwise the ``tab10``/``tab20`` cycle is used.
    """
    xy = _numpy(points, "points")
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(
            f"points must be [N, 2] (project wider embeddings with project_2d), got shape {xy.shape}"
        )
    raw = labels.detach().cpu().tolist() if isinstance(labels, torch.Tensor) else list(labels)
    if len(raw) != len(xy):
        raise ValueError(f"labels has {len(raw)} entries for {len(xy)} points")
    names = [label_names[v] if label_names is not None else v for v in raw]
    ax = _axes(ax, (5, 4.5))
    unique = list(dict.fromkeys(sorted(names, key=str)))
    cycle = plt.get_cmap("tab10" if len(unique) <= 10 else "tab20")
    for index, name in enumerate(unique):
        mask = np.array([n == name for n in names])
        colour = palette.get(str(name)) if palette is not None else None
        ax.scatter(
            xy[mask, 0],
            xy[mask, 1],
            s=size,
            label=str(name),
            color=colour if colour is not None else cycle(index % cycle.N),
            alpha=0.8,
            edgecolors="none",
        )
    ax.legend(fontsize=8, markerscale=1.5, loc="best", framealpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def image_grid(
    images: torch.Tensor | np.ndarray,
    captions: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    title: str | None = None,
    scale: float = 1.3,
    fontsize: float = 7,
) -> Figure:
    """Images ``[N, 3, H, W]`` (uint8, or float in [0, 1]) in a grid, each with an optional caption."""
    if isinstance(images, torch.Tensor):
        array = as_float_images(images).detach().cpu().float().numpy()
    else:
        array = np.asarray(images)
        array = array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 3, H, W] (or [N, 1, H, W]), got shape {array.shape}")
    n = len(array)
    if n == 0:
        raise ValueError("images is empty")
    if captions is not None and len(captions) != n:
        raise ValueError(f"captions has {len(captions)} entries for {n} images")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    height = scale * (1.25 if captions is not None else 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, height * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= n:
            continue
        picture = np.clip(array[index].transpose(1, 2, 0), 0.0, 1.0)
        ax.imshow(
            picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1
        )
        if captions is not None:
            ax.set_title(captions[index], fontsize=fontsize, wrap=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, caption: str | None = None
) -> str:
    """An HTML table of ``rows`` under ``header`` (cells are escaped); display it with
    ``IPython.display.HTML``. Format numbers before passing them in (``f"{x:.1%}"``).
    """
    from html import escape

    width = len(header)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"row {index} has {len(row)} cells but the header has {width}")
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def confusion_matrix(
    true: torch.Tensor | np.ndarray | Sequence[int],
    predicted: torch.Tensor | np.ndarray | Sequence[int],
    labels: Sequence[int],
    names: Sequence[str],
    *,
    rows: int | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Counts of (true, predicted) class pairs, drawn by scikit-learn's ``ConfusionMatrixDisplay``.

    ``labels`` are the class ids to show, in order, and ``names`` their names. With
    ``rows``, only the first ``rows`` true classes are shown (e.g. the held-out
    classes, with every class they were mistaken for as columns). Zero cells stay blank.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    if len(names) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(names)} names")
    shown = len(labels) if rows is None else rows
    ax = _axes(ax, (1.0 + 0.55 * len(labels), 1.0 + 0.45 * shown))
    display = ConfusionMatrixDisplay.from_predictions(
        _numpy(true, "true"), _numpy(predicted, "predicted"), labels=list(labels),
        display_labels=list(names), cmap="Blues", colorbar=False, ax=ax, xticks_rotation=60,
    )
    for text, value in zip(display.text_.ravel(), display.confusion_matrix.ravel(), strict=True):
        text.set_visible(bool(value))
        text.set_fontsize(8)
    ax.set_ylim(shown - 0.5, -0.5)
    ax.tick_params(labelsize=8)
    plt.setp(ax.get_xticklabels(), ha="right")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    return ax
