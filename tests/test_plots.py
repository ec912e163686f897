"""The plotting helpers draw what they promise and reject malformed input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from clipcourse import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_similarity_heatmap_draws_the_matrix():
    sim = torch.tensor([[1.0, -0.5], [0.2, 0.9], [0.0, 0.1]])
    ax = plots.similarity_heatmap(
        sim, row_labels=["a", "b", "c"], col_labels=["x", "y"], annotate=True, title="t"
    )
    np.testing.assert_allclose(ax.images[0].get_array(), sim.numpy())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert len(ax.texts) == 6 and ax.get_title() == "t"
    with pytest.raises(ValueError, match="2-D"):
        plots.similarity_heatmap(torch.ones(3))
    with pytest.raises(ValueError, match="row_labels has 2"):
        plots.similarity_heatmap(sim, row_labels=["a", "b"])


def test_loss_curve_raw_and_smoothed():
    ax = plots.loss_curve([3.0, 2.0, 1.5, 1.0, 0.8], smooth=2, label="run")
    raw, smoothed = ax.lines
    assert list(raw.get_ydata()) == [3.0, 2.0, 1.5, 1.0, 0.8]
    np.testing.assert_allclose(smoothed.get_ydata(), [2.5, 1.75, 1.25, 0.9])
    plots.loss_curve(torch.tensor([1.0, 0.5]), ax=ax, label="other")
    assert len(ax.lines) == 3 and len(ax.get_legend().get_texts()) == 2
    with pytest.raises(ValueError, match="empty"):
        plots.loss_curve([])


@pytest.mark.parametrize("method", ["pca", pytest.param("tsne", marks=pytest.mark.slow)])
def test_project_2d(method):
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    points = plots.project_2d(x, method=method)
    assert points.shape == (40, 2) and np.isfinite(points).all()


def test_project_2d_rejects_unknown_method():
    with pytest.raises(ValueError, match="pca"):
        plots.project_2d(torch.randn(5, 3), method="umap")


def test_embedding_scatter_one_group_per_label_with_palette():
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [3.0, 1.0]])
    ax = plots.embedding_scatter(
        points, torch.tensor([0, 1, 0, 1]), label_names=["red", "blue"], palette={"red": "red"}
    )
    assert len(ax.collections) == 2
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["blue", "red"]
    red = next(c for c in ax.collections if c.get_label() == "red")
    np.testing.assert_allclose(red.get_offsets(), [[0.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(red.get_facecolor()[0][:3], [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="N, 2"):
        plots.embedding_scatter(torch.ones(4, 3), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="3 entries for 4"):
        plots.embedding_scatter(points, [0, 1, 0])


def test_image_grid_layout_and_captions():
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    fig = plots.image_grid(images, [f"img {i}" for i in range(5)], ncols=3, title="grid")
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x 3 columns, the last one blank
    assert [ax.get_title() for ax in axes[:5]] == [f"img {i}" for i in range(5)]
    np.testing.assert_allclose(
        axes[0].images[0].get_array(), images[0].permute(1, 2, 0).numpy() / 255
    )
    assert not axes[5].images
    with pytest.raises(ValueError, match="N, 3, H, W"):
        plots.image_grid(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="captions has 1"):
        plots.image_grid(torch.rand(2, 3, 4, 4), ["one"])


def test_html_table_escapes_and_checks_widths():
    html = plots.html_table(["name", "value"], [["a<b", "1.0%"], ["c", 2]], caption="t & u")
    assert html.startswith("<table><caption>t &amp; u</caption><thead><tr><th>name</th>")
    assert "<td>a&lt;b</td><td>1.0%</td>" in html and "<td>2</td>" in html
    assert html.count("<tr>") == 3
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        plots.html_table(["a", "b"], [["x", "y"], ["z"]])


def test_confusion_matrix_draws_the_counts_with_sklearn():
    import matplotlib.pyplot as plt

    from clipcourse import plots

    true = [0, 0, 1, 1, 1]
    pred = [0, 2, 1, 1, 0]
    ax = plots.confusion_matrix(true, pred, [0, 1, 2], ["a", "b", "c"], rows=2)
    shown = [t.get_text() for t in ax.texts if t.get_visible()]
    assert sorted(shown) == ["1", "1", "1", "2"]  # zero cells stay blank
    assert ax.get_ylim() == (1.5, -0.5)  # only the two true classes
    with pytest.raises(ValueError, match="names"):
        plots.confusion_matrix(true, pred, [0, 1, 2], ["a", "b"])
    plt.close("all")
