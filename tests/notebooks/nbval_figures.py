"""pytest plugin for nbval: compare every float of plotly figures and circuitsvis pages up to a tolerance.

nbval compares outputs for equality, but the last bits of a float32 computation differ between CPUs
(vector width, BLAS kernels and thread count change the order of sums). Text outputs stay compared
exactly: the notebooks print numbers at a precision that every CPU reproduces. In a figure, the floats
are stored in full, so this plugin turns each float of a plotly figure (base64 ``bdata`` arrays, lists,
and plain scalars such as ``zmin``/``zmax``, axis ranges, annotation and line positions) and each float
of a circuitsvis page's props into an object that compares with a tolerance:

- an array equals another of the same shape when every element is within ``RTOL`` times its scale on the
  plot: the array's largest magnitude, or, for a heatmap's ``z`` drawn on fixed colour bounds (the trace's
  ``zmin``/``zmax``, its colour axis' ``cmin``/``cmax``), the largest bound when it is larger (a map of
  float noise drawn on a scale of a few logits shows no colour, and its bits vary from CPU to CPU); a scalar,
  within ``RTOL`` of its own magnitude;
- circuitsvis rounds its values to 4 decimals, so one rounding step (``ROUNDING_STEP``) is allowed on
  top: the same noise can flip the last digit.

Integers, booleans and strings (labels, titles, tokens, hover text, the page's script) and the order of
the elements are still compared exactly. ``RTOL`` is 1e-3: a quarter of one step of a 256-colour scale,
half a pixel on a 500-pixel axis, and ten times the largest difference measured between the CPU variants
of ``make test`` (native vs AVX2-only, 2 threads vs 1): 9e-5 of the scale, in notebook 06's map of the
difference of two nearly equal probabilities; below 5e-6 of the scale in every other figure (notebook 09's
patching map on the embedded model, float noise near 0.003 drawn on [-1, 1]: 4.8e-6 of its colour scale, but
1.1e-3 of its own magnitude, between 2 threads and 1 on an AMD EPYC, 2026-12-07). Used by
``make test`` (``-p tests.notebooks.nbval_figures``).
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
from nbval.plugin import IPyNbCell

RTOL = 1e-3
ROUNDING_STEP = 1e-4  # circuitsvis rounds its values to 4 decimals
_CIRCUITSVIS_CALL = re.compile(r'CircuitsVis\.render\("[^"]*", CircuitsVis\.\w+, ')


class CloseArray:
    """A float array that equals another of the same shape up to ``RTOL`` of its scale (+ ``step``)."""

    def __init__(self, values: np.ndarray, step: float = 0.0, scale: float = 0.0):
        self.values, self.step, self.scale = np.asarray(values, dtype=float), step, scale

    def __eq__(self, other) -> bool:
        if not isinstance(other, CloseArray) or self.values.shape != other.values.shape:
            return False
        a, b = self.values, other.values
        finite = np.isfinite(a)
        if not np.array_equal(finite, np.isfinite(b)) or not np.array_equal(a[~finite], b[~finite], equal_nan=True):
            return False  # NaN (blank cells) and infinities at the same places
        a, b = a[finite], b[finite]
        if a.size == 0:
            return True
        scale = max(np.abs(a).max(), np.abs(b).max(), self.scale, other.scale)
        return bool(np.all(np.abs(a - b) <= RTOL * scale + max(self.step, other.step)))

    def __repr__(self) -> str:
        return f"CloseArray(shape={self.values.shape}, {np.array2string(self.values, threshold=6, precision=6)})"


class CloseFloat:
    """A scalar float that equals another up to ``RTOL`` of its magnitude (+ ``step``)."""

    def __init__(self, value: float, step: float = 0.0):
        self.value, self.step = float(value), step

    def __eq__(self, other) -> bool:
        if not isinstance(other, CloseFloat):
            return False
        a, b = self.value, other.value
        if not (np.isfinite(a) and np.isfinite(b)):
            return a == b or (np.isnan(a) and np.isnan(b))
        return abs(a - b) <= RTOL * max(abs(a), abs(b)) + max(self.step, other.step)

    def __repr__(self) -> str:
        return f"CloseFloat({self.value!r})"


def _numeric_list(node) -> np.ndarray | None:
    """A (nested, rectangular) list of numbers with at least one float as an array, else None."""
    try:
        values = np.asarray(node, dtype=object)
        if values.dtype == object and values.size and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.flat
        ):
            as_float = values.astype(float)
            return as_float if any(isinstance(v, float) for v in values.flat) else None
    except ValueError:  # ragged
        pass
    return None


def _decode(node, step: float = 0.0, scale: float = 0.0):
    """The JSON tree with every float (array or scalar) replaced by a Close* object; ``scale``: the least scale
    of its arrays (see CloseArray)."""
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            values = np.frombuffer(base64.b64decode(node["bdata"]), dtype=node["dtype"])
            shape = node.get("shape")
            if shape:
                values = values.reshape([int(n) for n in str(shape).split(",")])
            return CloseArray(values, step, scale) if values.dtype.kind == "f" else values.tolist()
        return {key: _decode(value, step, scale) for key, value in node.items()}
    if isinstance(node, list):
        values = _numeric_list(node)
        if values is not None:
            return CloseArray(values, step, scale)
        return [_decode(v, step, scale) for v in node]
    if isinstance(node, float):
        return CloseFloat(node, step)
    return node


def _colour_bounds(trace: dict, layout: dict) -> float:
    """The largest magnitude of a trace's fixed colour bounds (its zmin / zmax, else its colour axis' cmin / cmax);
    0 when it has none."""
    axis = layout.get(trace.get("coloraxis", ""), {}) if isinstance(trace.get("coloraxis"), str) else {}
    bounds = [trace.get("zmin"), trace.get("zmax")]
    if bounds == [None, None] and isinstance(axis, dict):
        bounds = [axis.get("cmin"), axis.get("cmax")]
    return max((abs(b) for b in bounds if isinstance(b, (int, float)) and not isinstance(b, bool)), default=0.0)


def _decode_figure(figure: dict) -> dict:
    """A plotly figure decoded: each trace's ``z`` compared on the scale of its colour bounds, if fixed."""
    layout = figure["layout"] if isinstance(figure["layout"], dict) else {}
    if not isinstance(figure["data"], list):
        return _decode(figure)

    def trace(node):
        if not isinstance(node, dict):
            return _decode(node)
        scale = _colour_bounds(node, layout)
        return {key: _decode(value, scale=scale if key == "z" else 0.0) for key, value in node.items()}

    return {key: [trace(t) for t in value] if key == "data" else _decode(value) for key, value in figure.items()}


def _split_circuitsvis(self, html: str) -> list:
    """The page as [text, props, text, props, ..., text]: each render call's JSON props decoded."""
    pieces, start = [], 0
    for call in _CIRCUITSVIS_CALL.finditer(html):
        props, end = json.JSONDecoder().raw_decode(html, call.end())
        pieces += [_sanitize(self, html[start : call.end()]), _decode(props, ROUNDING_STEP)]
        start = end
    return pieces + [_sanitize(self, html[start:])]


_sanitize = IPyNbCell.sanitize


def sanitize(self, s):
    if isinstance(s, dict) and "data" in s and "layout" in s:  # a plotly figure
        return _decode_figure(s)
    if isinstance(s, str) and _CIRCUITSVIS_CALL.search(s):  # a circuitsvis page
        return _split_circuitsvis(self, s)
    return _sanitize(self, s)


IPyNbCell.sanitize = sanitize
