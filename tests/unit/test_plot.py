"""helpers.plot: figures carry their data, and circuitsvis views render offline with stable ids."""

import importlib

import torch

from helpers import plot


def test_renderer_follows_the_environment(monkeypatch):
    assert plot.setup_renderer() == "plotly_mimetype"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release")
    assert plot.setup_renderer() == "colab"
    monkeypatch.delenv("COLAB_RELEASE_TAG")
    assert plot.setup_renderer() == "plotly_mimetype"


def test_imshow_is_centred_rdbu():
    fig = plot.imshow(torch.tensor([[1.0, -2.0], [0.5, 0.0]]), xaxis="Tête", yaxis="Couche", return_fig=True)
    assert fig.data[0].z.tolist() == [[1.0, -2.0], [0.5, 0.0]]
    assert fig.layout.coloraxis.cmid == 0.0
    assert fig.layout.xaxis.title.text == "Tête"


def test_line_one_trace_per_row_with_labels():
    fig = plot.line(torch.arange(6.0).view(2, 3), x=[1, 10, 100], line_labels=["a", "b"], log_x=True,
                    return_fig=True)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[1].y) == [3.0, 4.0, 5.0] and list(fig.data[0].x) == [1, 10, 100]
    assert fig.layout.xaxis.type == "log"


def test_scatter_hover_names():
    fig = plot.scatter(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), hover_name=["L0H0", "L0H1"], return_fig=True)
    assert list(fig.data[0].hovertext) == ["L0H0", "L0H1"]


def test_circuitsvis_bundle_inlined_once_and_ids_stable():
    importlib.reload(plot)
    tokens = ["<|endoftext|>", "Hello", " world"]
    first = plot.attention_patterns(tokens, torch.rand(2, 3, 3))._repr_html_()
    second = plot.attention_patterns(tokens, torch.rand(2, 3, 3))._repr_html_()
    assert "CircuitsVis" in first and len(first) > 100_000  # the bundle, from the installed package
    assert len(second) < 10_000 and 'id="circuits-vis-1"' in second
    for html in (first, second):  # nothing loaded from a CDN
        assert 'from "https://' not in html and 'src="https://' not in html
    assert repr(plot.attention_heads(tokens, torch.rand(2, 3, 3))) == "<circuitsvis AttentionHeads: 3 tokens>"


def test_plotly_express_line_and_scatter_work():
    """The seeds' own helpers call px.line / px.scatter, which need pandas (a dependency of the course)."""
    import plotly.express as px

    assert px.line(y=[1.0, 2.0, 3.0]).data[0].y.tolist() == [1.0, 2.0, 3.0]
    assert px.scatter(x=[0, 1], y=[2.0, 3.0]).data[0].x.tolist() == [0, 1]
