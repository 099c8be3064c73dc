"""Executed notebooks -> self-contained HTML pages that work offline (``make run`` calls it).

    python -m tools.html_export notebooks build

A development tool: it needs nbconvert (the ``dev`` extra), which the course's runtime does not.

writes ``build/<notebook>.html`` for each ``notebooks/NN_*.ipynb`` and ``build/index.html`` listing them.

nbconvert's HTML exporter (template ``lab``) does the page; :class:`OfflineOutputs` fixes what it
cannot show offline:

* plotly figures are stored as ``application/vnd.plotly.v1+json`` (renderer ``plotly_mimetype``), a
  mime type nbconvert does not draw: each becomes a ``text/html`` div + ``Plotly.newPlot`` script
  (``plotly.io.to_html``), and plotly.js, from the installed plotly package, is inlined once in the
  page's ``<head>``;
* circuitsvis views (``helpers.plot.CircuitsVisHTML``) call ``CircuitsVis.render``, whose bundle the
  first view of a kernel session inlines: the bundle of the installed circuitsvis package is taken out
  of the outputs and inlined once in the ``<head>``, so it is there before every view whatever the
  order the cells ran in; views that import circuitsvis from a CDN (``circuitsvis`` itself, or Colab)
  use that inlined bundle instead;
* LaTeX in markdown (``$…$``, ``$$…$$``) is typeset by MathJax 3 (``tex-svg-full.js``, from the
  ``django-static-mathjax`` package of the ``dev`` extra), inlined once in the ``<head>`` of the pages that
  have math: every TeX extension is in that file, so it loads nothing;
* widgets (tqdm's progress bars) are drawn in the state the notebook saved at the end of its run
  (``metadata.widgets``, which ``make run`` keeps), as static HTML: a ``<progress>`` per bar, the text
  beside it; a widget whose state was not saved shows its text representation (taken when it appeared);
* the template's scripts from CDNs (require.js, MathJax, mermaid, widgets) are left out: no page
  makes a request to the network.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
from importlib.resources import files
from pathlib import Path

import nbformat
import plotly.io as pio
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html
from nbconvert.preprocessors import Preprocessor
from plotly.offline import get_plotlyjs

from helpers.plot import circuitsvis_bundle

PLOTLY_MIME = "application/vnd.plotly.v1+json"
HTML_MIME = "text/html"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
# Height of a figure without ``layout.height``, as plotly's own notebook renderers draw it.
DEFAULT_FIGURE_HEIGHT = 525

INDEX_TITLE = "Interprétabilité mécaniste — le cours"

# The ``lab`` template without its scripts from CDNs, plus the scripts the outputs need, inlined.
_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
{%- for script in resources.get('offline_scripts', []) %}
<script>
{{ script }}
</script>
{%- endfor %}
{%- endblock html_head_css -%}
"""

# A view that imports circuitsvis from a CDN: ``import { render, AttentionPatterns } from "https://…";``
_CV_CDN_IMPORT = re.compile(r'import\s*\{([^}]*)\}\s*from\s*"https?://[^"]*circuitsvis[^"]*"\s*;?')


# Math in markdown, as nbconvert's markdown filter leaves it for MathJax ($…$, $$…$$, \begin{env}…\end{env};
# it turns \(…\) into (…)).
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+\$|\\begin\{([a-z]+\*?)\}.+?\\end\{\1\}", re.DOTALL)
# MathJax typesets the markdown (cells and markdown outputs), not the other outputs (figures, views, text).
_MATHJAX_CONFIG = r"""window.MathJax = {
  tex: {inlineMath: [['$', '$']], displayMath: [['$$', '$$']], processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: 'tex2jax_ignore|jp-OutputArea', processHtmlClass: 'tex2jax_process|jp-RenderedMarkdown',
            enableMenu: false},
  svg: {fontCache: 'global'}
};
"""


def has_math(nb) -> bool:
    return any(cell.cell_type == "markdown" and MATH.search(cell.source) for cell in nb.cells)


def mathjax_js() -> str:
    """MathJax 3 (every TeX extension, SVG output) from the installed django-static-mathjax package."""
    try:
        path = files("mathjax") / "static" / "mathjax" / "es5" / "tex-svg-full.js"
        script = path.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise RuntimeError("the notebooks have LaTeX but MathJax is not installed: pip install django-static-mathjax "
                           "(in the dev extra: make install)") from error
    return _MATHJAX_CONFIG + script


_BAR_COLOURS = {"success": "#4caf50", "info": "#2196f3", "warning": "#ff9800", "danger": "#f44336"}


def widget_html(model_id: str, state: dict) -> str | None:
    """A saved widget as static HTML (boxes, HTML and label text, progress bars); None if a part is unknown."""
    model = state.get(model_id)
    if model is None:
        return None
    name, values = model.get("model_name"), model.get("state", {})
    if name in ("HBoxModel", "VBoxModel", "BoxModel"):
        children = [widget_html(ref.removeprefix("IPY_MODEL_"), state) for ref in values.get("children", [])]
        if None in children:
            return None
        direction = "column" if name == "VBoxModel" else "row"
        return (f'<div class="static-widget" style="display: flex; flex-direction: {direction}; '
                f'align-items: center; gap: 0.5em">{"".join(children)}</div>')
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<span>{values.get("value", "")}</span>'
    if name == "LabelModel":
        return f'<span>{html.escape(values.get("value", ""))}</span>'
    if name in ("FloatProgressModel", "IntProgressModel"):
        low, high, value = values.get("min", 0), values.get("max", 100), values.get("value", 0)
        colour = _BAR_COLOURS.get(values.get("bar_style") or "", _BAR_COLOURS["info"])
        bar = (f'<progress max="{high - low}" value="{value - low}" '
               f'style="width: 20em; accent-color: {colour}"></progress>')
        label = values.get("description")
        return f"<span>{html.escape(label)}</span>{bar}" if label else bar
    return None


def plotly_js() -> str:
    """plotly.js from the installed plotly package."""
    return "window.PlotlyConfig = {MathJaxConfig: 'local'};\n" + get_plotlyjs()


def plotly_figure_html(figure: dict) -> str:
    """A stored plotly figure (``application/vnd.plotly.v1+json``) as a div + ``Plotly.newPlot`` script."""
    figure = dict(figure)
    config = figure.pop("config", None) or {}
    return pio.to_html(figure, config=config, include_plotlyjs=False, full_html=False, validate=False,
                       default_width="100%", default_height=DEFAULT_FIGURE_HEIGHT)


class OfflineOutputs(Preprocessor):
    """Makes plotly, circuitsvis and widget outputs and LaTeX drawable offline; puts the scripts they need in
    ``resources["offline_scripts"]`` (inlined in the page's head by the template)."""

    def preprocess(self, nb, resources):
        bundle = circuitsvis_bundle()
        # drawn here, the widgets' state need not be in the page too (the template would add it)
        widgets = nb.metadata.pop("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
        has_plotly = has_circuitsvis = False
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            for output in cell.get("outputs", []):
                data = output.get("data")
                if not data:
                    continue
                if WIDGET_VIEW_MIME in data:
                    static = widget_html(data.pop(WIDGET_VIEW_MIME).get("model_id", ""), widgets)
                    if static:
                        data[HTML_MIME] = static
                    continue
                if PLOTLY_MIME in data:
                    figure = data.pop(PLOTLY_MIME)
                    if isinstance(figure, str):
                        figure = json.loads(figure)
                    data[HTML_MIME] = plotly_figure_html(figure)
                    has_plotly = True
                    continue
                text = data.get(HTML_MIME)
                if not text:
                    continue
                if isinstance(text, list):
                    text = "".join(text)
                if "CircuitsVis" in text or "circuitsvis" in text:
                    text = text.replace(bundle, "")
                    text = _CV_CDN_IMPORT.sub(lambda m: f"const {{{m.group(1)}}} = window.CircuitsVis;", text)
                    has_circuitsvis = has_circuitsvis or "CircuitsVis" in text
                    data[HTML_MIME] = text
                elif "plotly-graph-div" in text or "Plotly.newPlot" in text:
                    has_plotly = True  # a figure shown with another renderer: it needs plotly.js too
        scripts = [mathjax_js()] if has_math(nb) else []
        if has_plotly:
            scripts.append(plotly_js())
        if has_circuitsvis:
            scripts.append(bundle)
        resources["offline_scripts"] = scripts
        title = notebook_title(nb)
        if title and "title" not in nb.metadata:
            nb.metadata["title"] = title
        return nb, resources


def make_exporter() -> HTMLExporter:
    exporter = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({"offline.html.j2": _TEMPLATE})],
                            template_file="offline.html.j2")
    exporter.language_code = "fr"
    exporter.register_preprocessor(OfflineOutputs(), enabled=True)
    return exporter


# ------------------------------------------------------------------------------------------------
# Title and one-line description, from the first markdown cell
# ------------------------------------------------------------------------------------------------


def _first_markdown(nb) -> str:
    return next((c.source for c in nb.cells if c.cell_type == "markdown" and c.source.strip()), "")


def notebook_title(nb) -> str:
    for line in _first_markdown(nb).splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def notebook_description(nb) -> str:
    """Markdown: the first sentence of the first paragraph (not a heading) of the first markdown cell."""
    for paragraph in re.split(r"\n\s*\n", _first_markdown(nb)):
        paragraph = " ".join(line.strip() for line in paragraph.strip().splitlines())
        if not paragraph or paragraph.startswith(("#", "<", "!", "|", "```", "$$")):
            continue
        sentence = re.match(r"(.+?[.!?])(\s+(?=[A-ZÀ-ÖØ-Þ«*_`(\[])|$)", paragraph)
        return sentence.group(1) if sentence else paragraph
    return ""


def _inline_markdown(text: str) -> str:
    out = markdown2html(text).strip()
    if out.startswith("<p>") and out.endswith("</p>") and out.count("<p>") == 1:
        out = out[3:-4]
    return out


def index_html(entries: list[tuple[str, str, str]]) -> str:
    """entries: (file name, title, description in markdown)."""
    items = "\n".join(
        f'<li><a href="{html.escape(name)}">{html.escape(title)}</a>'
        + (f"<br><span class=\"desc\">{_inline_markdown(desc)}</span>" if desc else "") + "</li>"
        for name, title, desc in entries)
    return f"""<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(INDEX_TITLE)}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 52rem;
       margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #222; }}
ul {{ list-style: none; padding: 0; }}
li {{ margin: 0 0 1rem 0; }}
a {{ font-weight: 600; font-size: 1.1rem; }}
.desc {{ color: #444; }}
code {{ background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }}
</style>
</head>
<body>
<h1>{html.escape(INDEX_TITLE)}</h1>
<p>Les notebooks du cours, exécutés, dans l'ordre. Ces pages fonctionnent sans réseau.</p>
<ul>
{items}
</ul>
</body>
</html>
"""


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------

_REMOTE_SCRIPT = re.compile(r"""<script[^>]*\bsrc\s*=\s*["']?(?:https?:)?//|import[^;"']*from\s*["'](?:https?:)?//""",
                            re.IGNORECASE)


def remote_scripts(page: str) -> list[str]:
    """The places where a page would load a script from the network (should be none)."""
    return [page[m.start():m.start() + 120] for m in _REMOTE_SCRIPT.finditer(page)]


def export_notebook(path: Path, out_dir: Path, exporter: HTMLExporter | None = None) -> Path:
    path, out_dir = Path(path), Path(out_dir)
    exporter = exporter or make_exporter()
    nb = nbformat.read(path, as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    out = out_dir / (path.stem + ".html")
    out.write_text(body, encoding="utf-8")
    return out


def export_all(notebooks: list[Path], out_dir: Path, verbose: bool = False) -> list[Path]:
    """Export the notebooks (in the given order) and write ``index.html``; returns the pages."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = make_exporter()
    pages, entries = [], []
    for path in notebooks:
        page = export_notebook(path, out_dir, exporter)
        nb = nbformat.read(path, as_version=4)
        entries.append((page.name, notebook_title(nb) or path.stem, notebook_description(nb)))
        pages.append(page)
        remote = remote_scripts(page.read_text(encoding="utf-8"))
        if remote:
            print(f"warning: {page} loads scripts from the network: {remote}", file=sys.stderr)
        if verbose:
            print(f"{path} -> {page} ({page.stat().st_size / 1e6:.1f} MB)")
    (out_dir / "index.html").write_text(index_html(entries), encoding="utf-8")
    if verbose:
        print(f"index -> {out_dir / 'index.html'}")
    return pages


def find_notebooks(source: Path) -> list[Path]:
    source = Path(source)
    if source.is_file():
        return [source]
    return sorted(source.glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.html_export", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", type=Path, help="folder of NN_*.ipynb notebooks (or one notebook)")
    parser.add_argument("out_dir", type=Path, help="where to write the HTML pages and index.html")
    args = parser.parse_args(argv)
    notebooks = find_notebooks(args.notebooks)
    if not notebooks:
        print(f"no notebook NN_*.ipynb in {args.notebooks}", file=sys.stderr)
        return 1
    export_all(notebooks, args.out_dir, verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
