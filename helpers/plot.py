"""Plots for the notebooks: plotly heatmaps / lines / scatters and circuitsvis attention views.

Importing this module picks the plotly renderer for where the notebook runs: ``colab`` in
Google Colab, otherwise ``plotly_mimetype`` (drawn natively by JupyterLab, Notebook 7 and VSCode,
and stored as figure JSON in the executed notebooks). ``setup_renderer()`` tells which.
"""

from __future__ import annotations

import itertools
import os
import sys
from functools import lru_cache
from pathlib import Path

import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio

from helpers.utils import to_numpy


def in_colab() -> bool:
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def setup_renderer() -> str:
    """Set and return the plotly renderer for this environment (Colab, or a Jupyter front end)."""
    pio.renderers.default = "colab" if in_colab() else "plotly_mimetype"
    return pio.renderers.default


setup_renderer()


def _show(fig, return_fig: bool):
    if return_fig:
        return fig
    fig.show()


def imshow(tensor, xaxis: str = "", yaxis: str = "", return_fig: bool = False, **kwargs):
    """Heatmap of a 2D tensor, RdBu centred at 0 (blue positive, red negative)."""
    kwargs.setdefault("color_continuous_midpoint", 0.0)
    kwargs.setdefault("color_continuous_scale", "RdBu")
    fig = px.imshow(to_numpy(tensor), labels={"x": xaxis, "y": yaxis}, aspect="auto", **kwargs)
    return _show(fig, return_fig)


def _layout(fig, xaxis: str, yaxis: str, title: str | None, log_x: bool, log_y: bool):
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, template="plotly")
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")


def line(tensor, xaxis: str = "", yaxis: str = "", title: str | None = None, x=None,
         line_labels: list[str] | None = None, log_x: bool = False, log_y: bool = False, markers: bool = False,
         return_fig: bool = False):
    """Line plot of a 1D tensor, or one line per row of a 2D tensor (named by ``line_labels``)."""
    y = to_numpy(tensor)
    rows = y[None] if y.ndim == 1 else y
    x = None if x is None else to_numpy(x)
    mode = "lines+markers" if markers else "lines"
    fig = go.Figure([go.Scatter(x=x, y=row, mode=mode, name=None if line_labels is None else line_labels[i],
                                showlegend=line_labels is not None) for i, row in enumerate(rows)])
    _layout(fig, xaxis, yaxis, title, log_x, log_y)
    return _show(fig, return_fig)


def scatter(x, y, xaxis: str = "", yaxis: str = "", title: str | None = None, hover_name: list[str] | None = None,
            color=None, caxis: str = "", log_x: bool = False, log_y: bool = False, return_fig: bool = False):
    """Scatter plot; ``hover_name`` names each point, ``color`` colours them (legend title ``caxis``)."""
    marker = {} if color is None else dict(color=to_numpy(color), colorscale="RdBu", showscale=True,
                                            colorbar=dict(title=caxis))
    fig = go.Figure(go.Scatter(x=to_numpy(x), y=to_numpy(y), mode="markers", marker=marker, hovertext=hover_name,
                               hoverinfo="text+x+y" if hover_name is not None else "x+y"))
    _layout(fig, xaxis, yaxis, title, log_x, log_y)
    return _show(fig, return_fig)


# ------------------------------------------------------------------------------------------------
# circuitsvis, without its per-render network probe
# ------------------------------------------------------------------------------------------------

_ids = itertools.count()
_js_sent = False


@lru_cache(maxsize=1)
def circuitsvis_bundle() -> str:
    """The circuitsvis IIFE bundle (defines ``window.CircuitsVis``) of the installed package, without
    ``</script>``: what the first view of a session inlines (tools/html_export.py takes it out again)."""
    import circuitsvis  # slow to import: only when a view is drawn

    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    return path.read_text(encoding="utf-8").replace("</script>", "")


class CircuitsVisHTML:
    """A circuitsvis view as HTML. Offline, the circuitsvis bundle (from the installed package) is
    inlined in the first view of the session; in Colab the views import it from the CDN."""

    def __init__(self, element: str, props: dict):
        self.element, self.props = element, props

    def __repr__(self) -> str:
        return f"<circuitsvis {self.element}: {len(self.props['tokens'])} tokens>"

    def _repr_html_(self) -> str:
        global _js_sent
        # circuitsvis is slow to import: only when a view is drawn.
        import circuitsvis
        from circuitsvis.utils.convert_props import convert_props

        div = f"circuits-vis-{next(_ids)}"
        props = convert_props(self.props)
        if in_colab():
            url = f"https://unpkg.com/circuitsvis@{circuitsvis.__version__}/dist/cdn/esm.js"
            return (f'<div id="{div}" style="margin: 15px 0;"></div><script type="module">\n'
                    f'import {{ render, {self.element} }} from "{url}";\n'
                    f'render("{div}", {self.element}, {props});\n</script>')
        bundle = ""
        if not _js_sent:
            bundle = "<script>\n" + circuitsvis_bundle() + "\n</script>\n"
            _js_sent = True
        return (f'{bundle}<div id="{div}" style="margin: 15px 0;"></div><script>\n'
                f'CircuitsVis.render("{div}", CircuitsVis.{self.element}, {props});\n</script>')


def _rounded(attention):
    """Attention weights to 4 decimals: smaller pages, and stable stored outputs."""
    return to_numpy(attention).astype(float).round(4)


def _attention_view(element: str, tokens: list[str], attention, head_names: list[str] | None) -> CircuitsVisHTML:
    props = {"tokens": list(tokens), "attention": _rounded(attention)}
    if head_names is not None:
        props["headLabels"] = list(head_names)
    return CircuitsVisHTML(element, props)


def attention_patterns(tokens: list[str], attention, head_names: list[str] | None = None) -> CircuitsVisHTML:
    """circuitsvis ``attention_patterns`` view: one thumbnail per head, click to enlarge.

    attention: [head dest src]; tokens: the str tokens of the sequence.
    """
    return _attention_view("AttentionPatterns", tokens, attention, head_names)


def attention_heads(tokens: list[str], attention, head_names: list[str] | None = None) -> CircuitsVisHTML:
    """circuitsvis ``attention_heads`` view: every head's pattern as a grid, with the token view."""
    return _attention_view("AttentionHeads", tokens, attention, head_names)
