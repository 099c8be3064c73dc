"""What learners see: the exported notebook pages, opened in a real browser (headless Chromium).

The notebooks in notebooks/ (as stored, with their outputs) and a small demo notebook made here (two
plotly figures, an Othello board, two circuitsvis views, three formulas, a tqdm bar) are exported with
``tools/html_export.py`` into a temporary folder, then each page is loaded from file:// in Debian's
Chromium driven by selenium + chromedriver, with no network. Per page:

* every plotly figure of the notebook is on the page, plotted, with at least one trace with points,
  and drawn (svg/canvas);
* every circuitsvis view has mounted its React root; an ``AttentionPatterns`` view shows one token
  button per token of its props, and every view one painted canvas per head (+ the enlarged one);
* every formula of the markdown ($…$, $$…$$) is typeset by MathJax, without a TeX error;
* every progress bar (tqdm) is drawn in the state the notebook saved at the end of its run, with its text
  (not the "0/30" of its text representation); the course notebooks must have saved that state;
* no JavaScript error (window errors, unhandled rejections, console.error, browser log), and no
  request leaves the machine;
* a screenshot of the first figure (or view) goes to build/screens/<notebook>.png and is not blank.

The checker is itself checked on broken copies of a page (a figure's data emptied, a figure removed,
the circuitsvis bundle removed, MathJax removed, a bar set back to 0): it must report each. Skipped only
where no Chromium + chromedriver is installed (``apt-get install chromium chromium-driver``; .ci/run does it).
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import os
import re
import shutil
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np
import pytest

from helpers import plot
from tools import html_export as export

pytestmark = pytest.mark.slow  # not in `make test-fast`

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = export.find_notebooks(ROOT / "notebooks")
SCREENS = ROOT / "build" / "screens"
DEMO = "00_demo_browser"
PAGE_TIMEOUT = 20.0  # seconds for a page's figures and views to appear
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                 "--disable-default-apps", "--window-size=1200,900", "--hide-scrollbars", "--mute-audio"]


# ------------------------------------------------------------------------------------------------
# What each page must show, read from its notebook
# ------------------------------------------------------------------------------------------------


@dataclass
class View:
    div: str
    element: str
    tokens: int
    heads: int


@dataclass
class Bar:
    max: float
    value: float
    text: str  # the widget's text (tqdm: description, percentage, count, times), whitespace collapsed


@dataclass
class Expected:
    figures: int = 0
    views: list[View] = field(default_factory=list)
    math: int = 0  # formulas in the markdown cells
    bars: list[Bar] = field(default_factory=list)  # progress bars, as saved
    unsaved_widgets: int = 0  # widget views whose state the notebook did not save


def _collapse(text: str) -> str:
    return " ".join(text.split())


def saved_bars(model_id: str, state: dict) -> list[Bar] | None:
    """The progress bars of a saved widget (a tqdm bar: an HBox of HTML, FloatProgress, HTML); None if not saved."""
    model = state.get(model_id)
    if model is None:
        return None
    children = [state.get(ref.removeprefix("IPY_MODEL_"), {}) for ref in model["state"].get("children", [])]
    text = _collapse(html.unescape("".join(re.sub(r"<[^>]*>", "", c["state"]["value"]) for c in children
                                           if c.get("model_name") in ("HTMLModel", "LabelModel"))))
    bars = [c["state"] for c in [model, *children] if c.get("model_name") in ("FloatProgressModel", "IntProgressModel")]
    # a state without its defaults (ipywidgets' embed_data) has no min (0), max (100) or value (0)
    return [Bar(b.get("max", 100) - b.get("min", 0), b.get("value", 0) - b.get("min", 0), text) for b in bars]


_RENDER_CALL = re.compile(r'render\(\s*"(circuits-vis-[^"]+)"\s*,\s*(?:CircuitsVis\s*\.\s*)?(\w+)\s*,\s*')


def expected_from_notebook(nb) -> Expected:
    expected = Expected()
    widgets = nb.metadata.get("widgets", {}).get(export.WIDGET_STATE_MIME, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown":  # code spans and blocks are not typeset
            expected.math += len(export.MATH.findall(re.sub(r"```.*?```|`[^`\n]*`", "", cell.source, flags=re.DOTALL)))
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            if export.WIDGET_VIEW_MIME in data:
                bars = saved_bars(data[export.WIDGET_VIEW_MIME]["model_id"], widgets)
                expected.bars += bars or []
                expected.unsaved_widgets += bars is None
                continue
            if export.PLOTLY_MIME in data:
                expected.figures += 1
                continue
            text = data.get(export.HTML_MIME, "")
            text = "".join(text) if isinstance(text, list) else text
            if "plotly-graph-div" in text:
                expected.figures += text.count('class="plotly-graph-div"')
            for m in _RENDER_CALL.finditer(text):
                props, _ = json.JSONDecoder().raw_decode(text, m.end())
                attention = props.get("attention")
                heads = len(attention) if isinstance(attention, list) and attention and \
                    isinstance(attention[0], list) and attention[0] and isinstance(attention[0][0], list) else 0
                expected.views.append(View(m.group(1), m.group(2), len(props.get("tokens") or []), heads))
    return expected


# ------------------------------------------------------------------------------------------------
# The demo notebook: outputs made here exactly as a kernel would store them (no kernel needed)
# ------------------------------------------------------------------------------------------------


def demo_notebook():
    import plotly.graph_objects as go
    import plotly.io as pio
    import torch
    from ipywidgets.embed import embed_data
    from tqdm.notebook import tqdm

    from helpers import othello, othello_plots, plot

    def figure_output(fig):
        bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
        return nbformat.v4.new_output("display_data", data=bundle)

    def html_output(view):
        return nbformat.v4.new_output("execute_result", data={"text/html": view._repr_html_(),
                                                               "text/plain": repr(view)}, execution_count=1)

    gen = torch.Generator().manual_seed(0)
    tokens = ["<|BOS|>", " Michel", " Dupont", " et", " Michel", " Dupont"]
    attention = torch.softmax(torch.randn(3, 6, 6, generator=gen), -1).tril()
    cells = [nbformat.v4.new_markdown_cell("# 00 — Démo\n\nUne page de démonstration : `plotly` et *circuitsvis*."),
             nbformat.v4.new_markdown_cell(r"Trois formules, $x_1^2$, $\operatorname{Re} \lambda$ et" "\n\n"
                                           r"$$\text{score} = \frac{\lVert W_A W_B \rVert_F}{\lVert W_A \rVert_F}$$"
                                           "\n\nmais pas `$HOME`.")]
    with contextlib.redirect_stdout(io.StringIO()):  # tqdm's widget, as in a kernel that shows it and runs the loop
        bar = tqdm(range(30), desc="démo")
        shown = repr(bar.container)  # its text representation, stored with the view when it appears: 0/30
        for _ in bar:
            pass
    widget_state = embed_data(views=[bar.container])["manager_state"]
    outputs = [
        figure_output(plot.imshow(torch.randn(5, 7, generator=gen), xaxis="x", yaxis="y", return_fig=True)),
        html_output(plot.attention_patterns(tokens, attention)),
        figure_output(go.Figure(go.Scatter(y=torch.randn(20, generator=gen).tolist(), mode="lines+markers"))),
        html_output(plot.attention_heads(tokens, attention, head_names=["L0H0", "L0H1", "L0H2"])),
        figure_output(othello_plots.plot_board(othello.OthelloBoard())),
        nbformat.v4.new_output("display_data", data={export.WIDGET_VIEW_MIME: {
            "version_major": 2, "version_minor": 0, "model_id": bar.container.model_id}, "text/plain": shown}),
    ]
    saved = plot._js_sent
    plot._js_sent = False  # as in a fresh kernel: the first view inlines the circuitsvis bundle
    try:
        for output in outputs:
            cell = nbformat.v4.new_code_cell("...")
            cell.outputs = [output]
            cells.append(cell)
    finally:
        plot._js_sent = saved
    return nbformat.v4.new_notebook(cells=cells, metadata={"widgets": {export.WIDGET_STATE_MIME: widget_state}})


# ------------------------------------------------------------------------------------------------
# PNG without PIL (stdlib zlib + numpy)
# ------------------------------------------------------------------------------------------------


def decode_png(png: bytes) -> np.ndarray:
    """8-bit non-interlaced gray/RGB/RGBA PNG -> uint8 array [height, width, channels]."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    assert depth == 8 and not interlace, f"unsupported PNG (depth {depth}, interlace {interlace})"
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, width * channels + 1)
    out = np.zeros((height, width * channels), np.uint8)
    prev = np.zeros(width * channels, np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 2:
            cur = line + prev
        elif kind == 1:  # Sub: running sum per channel
            cur = np.cumsum(line.reshape(width, channels).astype(np.int64), axis=0).astype(np.uint8).reshape(-1)
        else:  # Average, Paeth: sequential along the row
            cur, p = bytearray(line.tobytes()), prev.tobytes()
            for i in range(len(cur)):
                a = cur[i - channels] if i >= channels else 0
                b = p[i]
                if kind == 3:
                    cur[i] = (cur[i] + ((a + b) >> 1)) & 255
                else:
                    c = p[i - channels] if i >= channels else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.frombuffer(bytes(cur), np.uint8)
        out[y] = prev = cur
    return out.reshape(height, width, channels)


def blankness(png: bytes) -> tuple[float, float]:
    """(standard deviation of the luminance, fraction of pixels not of the most common colour)."""
    pixels = decode_png(png)[..., :3].astype(np.float64)
    lum = pixels @ np.array([0.299, 0.587, 0.114])[: pixels.shape[-1]]
    flat = pixels.reshape(-1, pixels.shape[-1]) @ np.array([65536, 256, 1])[: pixels.shape[-1]]
    _, counts = np.unique(flat, return_counts=True)
    return float(lum.std()), 1.0 - counts.max() / flat.size


def assert_not_blank(png: bytes, what: str):
    std, other = blankness(png)
    assert std > 3.0 and other > 0.01, f"{what}: blank screenshot (luminance std {std:.1f}, {other:.1%} drawn)"


# ------------------------------------------------------------------------------------------------
# The browser
# ------------------------------------------------------------------------------------------------


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver): $CHROMIUM / $CHROMEDRIVER if set, else Debian's."""
    def first(env: str, *names: str) -> str | None:
        candidates = [os.environ[env]] if os.environ.get(env) else [shutil.which(n) or "" for n in names]
        return next((c for c in candidates if c and os.access(c, os.X_OK)), None)

    chromium = first("CHROMIUM", "/usr/bin/chromium", "chromium", "chromium-browser")
    driver = first("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver")
    return (chromium, driver) if chromium and driver else None


# Installed before any script of each page: collects what goes wrong.
ERROR_HOOK = r"""
window.__pageErrors = [];
window.addEventListener('error', function (e) {
  var where = e.filename ? ' (' + e.filename.split('/').pop() + ':' + e.lineno + ')' : '';
  var what = e.message || (e.target && (e.target.src || e.target.href)) || 'resource failed to load';
  window.__pageErrors.push('error: ' + what + where);
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__pageErrors.push('unhandled rejection: ' + (e.reason && (e.reason.stack || e.reason.message) || e.reason));
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__pageErrors.push('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    return original.apply(console, arguments);
  };
})();
"""

# Hides WebGL from a page unless its URL ends with ?webgl: circuitsvis's tfjs then takes its CPU backend, as on
# a machine without WebGL. Software WebGL here (no GPU) costs ~10 s a page with a 60-token view; the demo page
# is checked with WebGL, the course pages without.
NO_WEBGL = r"""
if (!/[?&]webgl\b/.test(location.search)) {
  [window.HTMLCanvasElement, window.OffscreenCanvas].forEach(function (kind) {
    if (!kind) return;
    var getContext = kind.prototype.getContext;
    kind.prototype.getContext = function (type) {
      return /webgl/i.test(type) ? null : getContext.apply(this, arguments);
    };
  });
}
"""

# What the page shows: its plotly figures, the circuitsvis views asked for, its errors and requests.
PAGE_STATE = r"""
var views = arguments[0];
function npoints(trace) {
  var n = 0;
  ['x', 'y', 'z', 'values', 'lat', 'lon', 'r', 'theta', 'a', 'b', 'open', 'i', 'source'].forEach(function (k) {
    var v = trace[k];
    if (v && typeof v.length === 'number') n = Math.max(n, v.length);
  });
  return n;
}
function painted(canvas) {
  try {
    if (!canvas.width || !canvas.height) return false;
    var c = document.createElement('canvas');
    c.width = Math.min(canvas.width, 256); c.height = Math.min(canvas.height, 256);
    var ctx = c.getContext('2d');
    ctx.drawImage(canvas, 0, 0, c.width, c.height);
    var d = ctx.getImageData(0, 0, c.width, c.height).data;
    for (var i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
    return false;
  } catch (e) { return 'unreadable: ' + e; }
}
var figures = Array.prototype.map.call(document.querySelectorAll('.plotly-graph-div'), function (gd) {
  var full = gd._fullData || [];
  return {
    id: gd.id,
    plotted: gd.classList.contains('js-plotly-plot') && !!gd._fullLayout,
    traces: full.filter(function (t) { return t.visible !== false; }).length,
    points: full.reduce(function (s, t) { return s + npoints(t); }, 0),
    drawn: gd.querySelectorAll('.main-svg').length > 0 &&
      gd.querySelectorAll('g.trace, g.hm image, g.slice, canvas').length > 0
  };
});
var mounted = {};
views.forEach(function (v) {
  var el = document.getElementById(v);
  mounted[v] = el ? {
    exists: true,
    children: el.childElementCount,
    tokens: el.querySelectorAll('.tokens button').length,
    canvases: el.querySelectorAll('canvas').length,
    painted: Array.prototype.filter.call(el.querySelectorAll('canvas'),
                                         function (c) { return painted(c) === true; }).length
  } : {exists: false};
});
var bars = Array.prototype.map.call(document.querySelectorAll('progress'), function (p) {
  var box = p.closest('.static-widget') || p.parentElement;
  return {max: p.max, value: p.value, text: box.textContent.replace(/\s+/g, ' ').trim()};
});
var requests = performance.getEntriesByType('resource').map(function (r) { return r.name; })
  .filter(function (u) { return !/^(file|data|blob|about):/.test(u); });
return {figures: figures, views: mounted, errors: (window.__pageErrors || []).slice(), requests: requests,
        ready: document.readyState === 'complete', bars: bars,
        math: document.querySelectorAll('mjx-container').length,
        mathErrors: document.querySelectorAll('mjx-container [data-mml-node="merror"]').length};
"""


@dataclass
class PageReport:
    problems: list[str]
    screenshot: bytes | None


class Browser:
    def __init__(self, chromium: str, chromedriver: str):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in BROWSER_FLAGS + [f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(chromedriver))
        self.driver.set_page_load_timeout(60)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK + NO_WEBGL})

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def _state(self, expected: Expected) -> dict:
        return self.driver.execute_script(PAGE_STATE, [v.div for v in expected.views])

    @staticmethod
    def _view_ok(view: View, got: dict) -> bool:
        if not got.get("exists") or not got.get("children"):
            return False
        if view.element == "AttentionPatterns" and got["tokens"] != view.tokens:
            return False
        if view.element in ("AttentionPatterns", "AttentionHeads") and view.heads:
            return got["canvases"] >= view.heads + 1 and got["painted"] >= view.heads + 1
        return True

    def check(self, page: Path, expected: Expected, webgl: bool = False) -> PageReport:
        """Loads the page and returns what is wrong with it (nothing, for a good page)."""
        self.driver.get_log("browser")  # forget the previous page's messages
        self.driver.get(page.resolve().as_uri() + ("?webgl" if webgl else ""))
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            state = self._state(expected)
            # The figures' and views' divs are static HTML: a missing one will not come.
            missing = len(state["figures"]) != expected.figures or \
                not all(state["views"][v.div].get("exists") for v in expected.views)
            done = (all(f["plotted"] for f in state["figures"])
                    and all(self._view_ok(v, state["views"][v.div]) for v in expected.views)
                    and state["math"] >= expected.math)
            if state["ready"] and (done or missing) or state["errors"] or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        time.sleep(0.3)  # let a late error surface
        state = self._state(expected)
        logs = [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

        problems = []
        figures = state["figures"]
        if len(figures) != expected.figures:
            problems.append(f"{len(figures)} plotly figure(s) on the page, the notebook has {expected.figures}")
        for i, f in enumerate(figures):
            if not f["plotted"]:
                problems.append(f"figure {i + 1} was not plotted (plotly.js missing or failed)")
            elif not f["traces"] or not f["points"]:
                problems.append(f"figure {i + 1} has no data ({f['traces']} trace(s), {f['points']} point(s))")
            elif not f["drawn"]:
                problems.append(f"figure {i + 1} has data but drew nothing")
        for view in expected.views:
            got = state["views"][view.div]
            if not got.get("exists"):
                problems.append(f"circuitsvis view {view.div} is not on the page")
            elif not got["children"]:
                problems.append(f"circuitsvis view {view.div} ({view.element}) did not mount")
            elif not self._view_ok(view, got):
                problems.append(f"circuitsvis view {view.div} ({view.element}): {got['tokens']} token(s) shown for "
                                f"{view.tokens}, {got['painted']}/{got['canvases']} canvas(es) painted for "
                                f"{view.heads} head(s)")
        if state["math"] != expected.math:
            problems.append(f"{state['math']} formula(s) typeset by MathJax, "
                            f"the notebook's markdown has {expected.math}")
        if state["mathErrors"]:
            problems.append(f"{state['mathErrors']} formula(s) typeset as a TeX error")
        bars = [Bar(b["max"], b["value"], b["text"]) for b in state["bars"]]
        if len(bars) != len(expected.bars):
            problems.append(f"{len(bars)} progress bar(s) on the page, the notebook saved {len(expected.bars)}")
        for i, (got, saved) in enumerate(zip(bars, expected.bars, strict=False)):
            if got != saved:
                problems.append(f"progress bar {i + 1} shows {got.value:g}/{got.max:g} {got.text!r}, "
                                f"saved at {saved.value:g}/{saved.max:g} {saved.text!r}")
        problems += [f"JavaScript: {e}" for e in state["errors"]]
        problems += [f"browser log: {m}" for m in logs]
        problems += [f"network request: {u}" for u in state["requests"]]
        return PageReport(problems, self.screenshot(expected) if not problems else None)

    def screenshot(self, expected: Expected) -> bytes:
        """PNG of the first figure, else the first view, else the top of the page."""
        selector = ".plotly-graph-div" if expected.figures else \
            f"#{expected.views[0].div}" if expected.views else "body"
        box = self.driver.execute_script(
            "var e = document.querySelector(arguments[0]); e.scrollIntoView();"
            "var b = e.getBoundingClientRect();"
            "return [b.left + scrollX, b.top + scrollY, Math.min(b.width, 1200), Math.min(b.height, 900)];", selector)
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "optimizeForSpeed": True, "captureBeyondViewport": True,
            "clip": {"x": box[0], "y": box[1], "width": max(box[2], 1), "height": max(box[3], 1), "scale": 1}})
        return base64.b64decode(shot["data"])


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The notebooks and the demo, exported: {name: (page, expected)}, plus the folder."""
    out = tmp_path_factory.mktemp("site")
    demo = out / f"{DEMO}.ipynb"
    nbformat.write(demo_notebook(), demo)
    pages = export.export_all([demo, *NOTEBOOKS], out)
    site = {}
    for page, path in zip(pages, [demo, *NOTEBOOKS], strict=True):
        site[path.stem] = (page, expected_from_notebook(nbformat.read(path, as_version=4)))
    return out, site


@pytest.fixture(scope="module")
def browser():
    found = find_browser()
    if found is None:
        pytest.skip("no Chromium + chromedriver here (Debian: apt-get install chromium chromium-driver): "
                    "the exported pages were not opened in a browser")
    b = Browser(*found)
    yield b
    b.close()


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


def test_demo_has_what_it_checks(site):
    _, pages = site
    expected = pages[DEMO][1]
    assert expected.figures == 3
    assert [(v.element, v.tokens, v.heads) for v in expected.views] == [("AttentionPatterns", 6, 3),
                                                                         ("AttentionHeads", 6, 3)]
    assert expected.math == 3
    assert [(b.value, b.max) for b in expected.bars] == [(30, 30)] and expected.unsaved_widgets == 0
    assert expected.bars[0].text.startswith("démo: 100% 30/30 [")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_saved_its_widgets(path):
    """A progress bar's final state is in the notebook only if `make run` kept the widgets' state."""
    expected = expected_from_notebook(nbformat.read(path, as_version=4))
    assert expected.unsaved_widgets == 0, (f"{path.name}: {expected.unsaved_widgets} widget(s) without saved "
                                           "state (their page would show them at 0): re-run it with `make run`")


def test_pages_are_offline(site):
    _, pages = site
    for name, (page, expected) in pages.items():
        text = page.read_text(encoding="utf-8")
        assert export.remote_scripts(text) == [], f"{name} loads scripts from the network"
        assert "https://" not in "".join(re.findall(r"<script[^>]*>", text)), name
        if expected.figures:
            assert text.count("window.PlotlyConfig") == 1, f"{name}: plotly.js is not inlined exactly once"
        if expected.views:
            assert text.count("var CircuitsVis=") == 1, f"{name}: the circuitsvis bundle is not inlined exactly once"
            assert text.index("var CircuitsVis=") < text.index("CircuitsVis.render("), name
        assert text.count("window.MathJax = {") == (1 if expected.math else 0), f"{name}: MathJax inlined wrongly"


def test_index_lists_the_notebooks_in_order(site):
    out, pages = site
    index = (out / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'<a href="([^"]+\.html)"', index)  # the pages (descriptions may link the glossary too)
    assert links == [f"{name}.html" for name in pages]
    assert "Une page de démonstration : <code>plotly</code> et <em>circuitsvis</em>." in index


@pytest.mark.parametrize("name", [DEMO] + [p.stem for p in NOTEBOOKS])
def test_page_shows_its_figures_and_views(site, browser, name):
    _, pages = site
    page, expected = pages[name]
    report = browser.check(page, expected, webgl=name == DEMO)
    assert report.problems == [], f"{name}.html, in Chromium:\n  " + "\n  ".join(report.problems)
    if name != DEMO:
        SCREENS.mkdir(parents=True, exist_ok=True)
        (SCREENS / f"{name}.png").write_bytes(report.screenshot)
    assert_not_blank(report.screenshot, name)


def _page_with_everything(pages) -> tuple[str, str, Expected]:
    """A real exported notebook page with a figure, a view, a formula and a bar, else the demo's."""
    for name in [*(p.stem for p in NOTEBOOKS), DEMO]:
        page, expected = pages[name]
        if expected.figures and expected.views and expected.math and expected.bars:
            return name, page.read_text(encoding="utf-8"), expected
    raise AssertionError("unreachable: the demo has all four")


def _empty_first_figure(text: str) -> str:
    """Plotly.newPlot("id", [traces], layout, config) -> Plotly.newPlot("id", [], layout, config)."""
    decoder, blank = json.JSONDecoder(), re.compile(r"\s*")
    start = blank.match(text, text.index("Plotly.newPlot(") + len("Plotly.newPlot(")).end()
    _, end = decoder.raw_decode(text, start)  # the div id
    start = blank.match(text, text.index(",", end) + 1).end()
    _, end = decoder.raw_decode(text, start)  # the traces
    return text[:start] + "[]" + text[end:]


def _remove_first_figure(text: str) -> str:
    return re.sub(r'<div [^>]*class="plotly-graph-div"[^>]*></div>', "", text, count=1)


def _remove_circuitsvis_bundle(text: str) -> str:
    return text.replace(plot.circuitsvis_bundle(), "")


def _remove_mathjax(text: str) -> str:
    return text.replace(export.mathjax_js(), "")


def _reset_first_bar(text: str) -> str:
    return re.sub(r'(<progress\b[^>]*\bvalue=")[^"]*"', r'\g<1>0"', text, count=1)


def test_checker_reports_broken_pages(site, browser, tmp_path):
    _, pages = site
    name, text, expected = _page_with_everything(pages)
    assert browser.check(pages[name][0], expected).problems == []
    # one page per breaking, all of whose messages the checker must give
    broken = {
        "figure data emptied": (_empty_first_figure, ["figure 1 has no data"]),
        "figure removed": (_remove_first_figure, [f"{expected.figures - 1} plotly figure(s) on the page"]),
        "circuitsvis bundle removed": (_remove_circuitsvis_bundle, ["did not mount", "CircuitsVis is not defined"]),
        "MathJax removed and bar reset": (lambda page: _reset_first_bar(_remove_mathjax(page)), [
            f"0 formula(s) typeset by MathJax, the notebook's markdown has {expected.math}",
            "progress bar 1 shows 0/"]),
    }
    for what, (breaking, messages) in broken.items():
        page = tmp_path / f"{name}-{what.replace(' ', '-')}.html"
        page.write_text(breaking(text), encoding="utf-8")
        assert page.read_text(encoding="utf-8") != text, f"{what}: the page was not changed"
        problems = browser.check(page, expected).problems
        for message in messages:
            assert any(message in p for p in problems), f"{what}: the checker did not see it: {problems}"
