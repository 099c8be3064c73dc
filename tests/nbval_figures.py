"""pytest plugin for nbval: compare plotly figures in notebook outputs up to float tolerance.

A figure stores its arrays as raw float bits (base64 ``bdata``), and the last bits of a float32
computation differ between CPUs (vector instructions round sums differently). nbval compares
outputs for equality, so this plugin turns every array of a plotly figure into an object that
equals another when the values agree to ``RTOL`` / ``ATOL``. Everything else in the figure
(labels, titles, layout, shapes) is still compared exactly. Used by ``make test``
(``-p tests.nbval_figures``).
"""

from __future__ import annotations

import base64

import numpy as np
from nbval.plugin import IPyNbCell

RTOL, ATOL = 1e-3, 1e-4


class CloseArray:
    """A figure's numeric array that compares with a tolerance."""

    def __init__(self, values: np.ndarray):
        self.values = values

    def __eq__(self, other) -> bool:
        return (isinstance(other, CloseArray) and self.values.shape == other.values.shape
                and np.allclose(self.values, other.values, rtol=RTOL, atol=ATOL, equal_nan=True))

    def __repr__(self) -> str:
        return f"CloseArray(shape={self.values.shape}, {np.array2string(self.values, threshold=6, precision=4)})"


def _decode(node):
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            values = np.frombuffer(base64.b64decode(node["bdata"]), dtype=node["dtype"]).astype(float)
            shape = node.get("shape")
            if shape:
                values = values.reshape([int(n) for n in str(shape).split(",")])
            return CloseArray(values)
        return {key: _decode(value) for key, value in node.items()}
    if isinstance(node, list):
        if node and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in node):
            return CloseArray(np.asarray(node, dtype=float))
        return [_decode(v) for v in node]
    return node


_sanitize = IPyNbCell.sanitize


def sanitize(self, s):
    if isinstance(s, dict) and "data" in s and "layout" in s:  # a plotly figure
        return _decode(s)
    return _sanitize(self, s)


IPyNbCell.sanitize = sanitize
