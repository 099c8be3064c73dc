"""The nbval plugin that compares plotly figures up to float tolerance (tests/nbval_figures.py)."""

import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

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
