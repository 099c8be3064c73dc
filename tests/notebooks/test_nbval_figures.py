"""The nbval plugin that compares the floats of figures up to a tolerance (tests/notebooks/nbval_figures.py)."""

import itertools
import json
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

from helpers import plot
from helpers.othello_plots import plot_board_values
from tests.notebooks import nbval_figures


def stored(fig: go.Figure) -> dict:
    """A figure as the notebooks store it (the plotly mimetype's JSON, arrays as base64 bdata)."""
    return json.loads(pio.to_json(fig))


def figure_output(z, title="Couche x tête") -> dict:
    return stored(go.Figure(go.Heatmap(z=np.asarray(z, dtype=np.float32)), layout={"title": title}))


def canonical(output):
    return nbval_figures.sanitize(None, output)


def same(a: dict, b: dict) -> bool:
    return canonical(a) == canonical(b)


def test_figures_that_differ_in_the_last_float_bits_compare_equal():
    z = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    nudged = np.nextafter(z, np.float32(np.inf))  # one float32 ulp: what another CPU's rounding gives
    assert figure_output(z) != figure_output(nudged)  # the raw stored outputs differ ...
    assert same(figure_output(z), figure_output(nudged))  # ... the compared ones do not


def test_figures_with_different_values_shapes_or_labels_still_differ():
    z = np.random.default_rng(0).normal(size=(4, 6))
    assert not same(figure_output(z), figure_output(z + 0.01))
    assert not same(figure_output(z), figure_output(z.reshape(6, 4)))
    assert not same(figure_output(z), figure_output(z, title="Autre titre"))


def test_array_tolerance_is_relative_to_the_array_scale():
    z = np.array([[1.0, -2.0], [0.5, 1e-4]])
    within, beyond = z.copy(), z.copy()
    within[1, 1] += 0.9e-3 * 2.0  # below RTOL of the largest magnitude, 2
    beyond[1, 1] += 1.1e-3 * 2.0
    assert same(figure_output(z), figure_output(within))
    assert not same(figure_output(z), figure_output(beyond))
    flipped = z.copy()
    flipped[0, 0] = -1.0  # a sign
    assert not same(figure_output(z), figure_output(flipped))


def test_a_map_on_fixed_colour_bounds_is_compared_on_their_scale():
    """A map of float noise (09's patching map on the embedded model: values near 0.003) drawn on a colour scale of
    [-1, 1] shows no colour; its bits vary from CPU to CPU by more than RTOL of its own tiny magnitude."""
    z = np.array([[0.0025, 0.0025], [-0.0044, 0.0041]])
    noisy = z + 1e-5  # 2e-3 of the map's own magnitude, 1e-5 of the colour scale
    moved = z + 2e-3  # 2e-3 of the colour scale: a visible change
    for layout in [{"coloraxis": {"cmin": -1.0, "cmax": 1.0}}, {}]:
        trace = {"coloraxis": "coloraxis"} if layout else {"zmin": -1.0, "zmax": 1.0}

        def fig(values, trace=trace, layout=layout):
            return stored(go.Figure(go.Heatmap(z=values.astype(np.float32), **trace), layout=layout))

        assert same(fig(z), fig(noisy))
        assert not same(fig(z), fig(moved))
    assert not same(figure_output(z), figure_output(noisy))  # without fixed bounds, the map's own scale
    assert same(stored(plot.imshow(torch.tensor(z), zmin=-1, zmax=1, return_fig=True)),
                stored(plot.imshow(torch.tensor(noisy), zmin=-1, zmax=1, return_fig=True)))


def test_figures_whose_order_changed_still_differ():
    """A scatter of eigenvalues listed in another order is another figure (the notebooks sort them)."""
    real = np.array([2.0, 0.5, 0.5, -1.0])
    imag = np.array([0.0, 0.8, -0.8, 0.0])
    fig = stored(go.Figure(go.Scatter(x=real, y=imag, mode="markers")))
    swapped = stored(go.Figure(go.Scatter(x=real[[0, 2, 1, 3]], y=imag[[0, 2, 1, 3]], mode="markers")))
    assert not same(fig, swapped)
    heat = np.arange(12.0).reshape(3, 4)
    assert not same(figure_output(heat), figure_output(heat[::-1]))


def board_values_figure(values) -> dict:
    return stored(plot_board_values(np.asarray(values), title="p(après) − p(avant)"))


def test_scalar_floats_of_a_figure_are_compared_with_the_tolerance():
    """zmin/zmax of a heatmap are plain floats: the values of issue 16 (two CPUs) agree, a 1% change does not."""
    values = np.linspace(-1.0, 0.4, 64) * 0.002631676383316517
    other_cpu = values.copy()
    other_cpu[0] = -0.0026316046714782715
    fig, noisy = board_values_figure(values), board_values_figure(other_cpu)
    assert fig["data"][0]["zmin"] != noisy["data"][0]["zmin"] and same(fig, noisy)

    changed = values.copy()
    changed[0] *= 1.01  # zmin and zmax move by 1%, every other value stays
    assert not same(fig, board_values_figure(changed))


def test_line_positions_ranges_and_annotations_are_compared_with_the_tolerance():
    def with_hline(y: float, y_max: float = 1.02) -> dict:
        fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0.4, 0.7, 0.75]))
        fig.add_hline(y=y, line_dash="dot", annotation_text="majoritaire (occupées)")
        fig.update_yaxes(range=[0, y_max])
        return stored(fig)

    assert same(with_hline(0.539), with_hline(0.539 * (1 + 1e-6)))
    assert not same(with_hline(0.539), with_hline(0.545))
    assert not same(with_hline(0.539), with_hline(0.539, y_max=1.05))


def test_integers_and_text_are_compared_exactly():
    base = stored(go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], text=["A1", "B2", "C3"], mode="markers")))
    assert same(base, base)
    assert not same(base, stored(go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], text=["A1", "B2", "C4"],
                                                      mode="markers"))))
    assert not same(base, stored(go.Figure(go.Scatter(x=[1, 2, 3], y=[2, 1, 3], text=["A1", "B2", "C3"],
                                                      mode="markers"))))


def test_blank_cells_must_stay_blank():
    values = np.linspace(0.1, 0.9, 60)  # 60 playable squares: the 4 centre squares are NaN
    fig = board_values_figure(values)
    assert np.isnan(canonical(fig)["data"][0]["z"].values).sum() == 4
    assert same(fig, board_values_figure(values))
    assert not same(fig, board_values_figure(np.linspace(0.1, 0.9, 64)))


def test_other_outputs_are_left_to_nbval():
    assert nbval_figures.sanitize(None, 42) == 42


def circuitsvis_page(monkeypatch, attention, tokens=("<|endoftext|>", "When", " Mary")) -> str:
    """An attention page as a notebook's first view renders it (values rounded to 4 decimals)."""
    monkeypatch.setattr(plot, "_js_sent", False)
    monkeypatch.setattr(plot, "_ids", itertools.count())
    return plot.attention_patterns(list(tokens), torch.tensor(attention))._repr_html_()


NBVAL_CELL = SimpleNamespace(parent=SimpleNamespace(sanitize_patterns={}))  # no regex sanitising


def test_circuitsvis_pages_one_rounding_step_apart_compare_equal(monkeypatch):
    attention = np.tril(np.full((1, 3, 3), 0.33333))
    flipped = attention.copy()
    flipped[0, 2, 1] += 1e-4  # the 4th decimal rounded the other way on another CPU
    page, other = circuitsvis_page(monkeypatch, attention), circuitsvis_page(monkeypatch, flipped)
    assert page != other
    assert nbval_figures.sanitize(NBVAL_CELL, page) == nbval_figures.sanitize(NBVAL_CELL, other)


def test_circuitsvis_pages_with_other_values_order_or_tokens_still_differ(monkeypatch):
    attention = np.tril(np.full((2, 3, 3), 0.33333))
    attention[1] = np.tril(np.full((3, 3), 0.5))
    page = nbval_figures.sanitize(NBVAL_CELL, circuitsvis_page(monkeypatch, attention))
    other_values = circuitsvis_page(monkeypatch, attention + np.tril(np.full((2, 3, 3), 0.01)))
    assert page != nbval_figures.sanitize(NBVAL_CELL, other_values)
    other_order = circuitsvis_page(monkeypatch, attention[::-1].copy())  # the two heads swapped
    assert page != nbval_figures.sanitize(NBVAL_CELL, other_order)
    other_tokens = circuitsvis_page(monkeypatch, attention, tokens=("<|endoftext|>", "When", " John"))
    assert page != nbval_figures.sanitize(NBVAL_CELL, other_tokens)
    assert page[-2]["tokens"] == ["<|endoftext|>", "When", " Mary"]
    assert isinstance(page[-2]["attention"], nbval_figures.CloseArray)
