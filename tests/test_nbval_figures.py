"""The nbval plugin that compares plotly figures up to float tolerance (tests/nbval_figures.py)."""

import itertools
import json
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

from helpers import plot
from tests import nbval_figures


def figure_output(z, title="Couche x tête") -> dict:
    """A figure as the notebooks store it (the plotly mimetype's JSON, arrays as base64 bdata)."""
    return json.loads(pio.to_json(go.Figure(go.Heatmap(z=np.asarray(z, dtype=np.float32)), layout={"title": title})))


def canonical(output):
    return nbval_figures.sanitize(None, output)


def test_figures_that_differ_in_the_last_float_bits_compare_equal():
    z = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    nudged = np.nextafter(z, np.float32(np.inf))  # one float32 ulp: what another CPU's rounding gives
    assert figure_output(z) != figure_output(nudged)  # the raw stored outputs differ ...
    assert canonical(figure_output(z)) == canonical(figure_output(nudged))  # ... the compared ones do not


def test_figures_with_different_values_shapes_or_labels_still_differ():
    z = np.random.default_rng(0).normal(size=(4, 6))
    assert canonical(figure_output(z)) != canonical(figure_output(z + 0.01))
    assert canonical(figure_output(z)) != canonical(figure_output(z.reshape(6, 4)))
    assert canonical(figure_output(z)) != canonical(figure_output(z, title="Autre titre"))


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


def test_circuitsvis_pages_with_other_values_or_tokens_still_differ(monkeypatch):
    attention = np.tril(np.full((1, 3, 3), 0.33333))
    page = nbval_figures.sanitize(NBVAL_CELL, circuitsvis_page(monkeypatch, attention))
    other_values = circuitsvis_page(monkeypatch, attention + np.tril(np.full((1, 3, 3), 0.01)))
    assert page != nbval_figures.sanitize(NBVAL_CELL, other_values)
    other_tokens = circuitsvis_page(monkeypatch, attention, tokens=("<|endoftext|>", "When", " John"))
    assert page != nbval_figures.sanitize(NBVAL_CELL, other_tokens)
    assert page[-2]["tokens"] == ["<|endoftext|>", "When", " Mary"] and isinstance(page[-2]["attention"], list)
