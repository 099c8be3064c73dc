"""pytest plugin for nbval: compare plotly figures and circuitsvis pages up to float tolerance.

A figure stores its arrays as raw float bits (base64 ``bdata``), and the last bits of a float32
computation differ between CPUs (vector instructions round sums differently). nbval compares
outputs for equality, so this plugin turns every array of a plotly figure into an object that
equals another when the values agree to ``RTOL`` / ``ATOL``. A circuitsvis page embeds its
values as JSON rounded to 4 decimals, where the same noise can flip the last digit: its JSON is
compared the same way, one rounding step apart at most. Everything else (labels, titles, layout,
tokens, the page's script) is still compared exactly. Used by ``make test`` (``-p tests.nbval_figures``).
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
from nbval.plugin import IPyNbCell

RTOL, ATOL = 1e-3, 1e-4
ROUNDED_ATOL = 1.5e-4  # circuitsvis rounds to 4 decimals: one step of 1e-4, plus float slack
_CIRCUITSVIS_CALL = re.compile(r'CircuitsVis\.render\("[^"]*", CircuitsVis\.\w+, ')


class CloseArray:
    """A figure's numeric array that compares with a tolerance."""

    def __init__(self, values: np.ndarray, atol: float = ATOL):
        self.values, self.atol = values, atol

    def __eq__(self, other) -> bool:
        return (isinstance(other, CloseArray) and self.values.shape == other.values.shape
                and np.allclose(self.values, other.values, rtol=RTOL, atol=max(self.atol, other.atol), equal_nan=True))

    def __repr__(self) -> str:
        return f"CloseArray(shape={self.values.shape}, {np.array2string(self.values, threshold=6, precision=4)})"


def _decode(node, atol: float = ATOL):
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:
            values = np.frombuffer(base64.b64decode(node["bdata"]), dtype=node["dtype"]).astype(float)
            shape = node.get("shape")
            if shape:
                values = values.reshape([int(n) for n in str(shape).split(",")])
            return CloseArray(values)
        return {key: _decode(value, atol) for key, value in node.items()}
    if isinstance(node, list):
        if node and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in node):
            return CloseArray(np.asarray(node, dtype=float), atol)
        return [_decode(v, atol) for v in node]
    return node


def _split_circuitsvis(self, html: str) -> list:
    """The page as [text, props, text, props, ..., text]: each render call's JSON props decoded."""
    pieces, start = [], 0
    for call in _CIRCUITSVIS_CALL.finditer(html):
        props, end = json.JSONDecoder().raw_decode(html, call.end())
        pieces += [_sanitize(self, html[start:call.end()]), _decode(props, ROUNDED_ATOL)]
        start = end
    return pieces + [_sanitize(self, html[start:])]


_sanitize = IPyNbCell.sanitize


def sanitize(self, s):
    if isinstance(s, dict) and "data" in s and "layout" in s:  # a plotly figure
        return _decode(s)
    if isinstance(s, str) and _CIRCUITSVIS_CALL.search(s):  # a circuitsvis page
        return _split_circuitsvis(self, s)
    return _sanitize(self, s)


IPyNbCell.sanitize = sanitize
