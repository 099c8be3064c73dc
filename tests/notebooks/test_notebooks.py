"""The notebooks share one skeleton (the outputs are nbval's job; the Colab badges are test_tools.py's)."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells(path: Path) -> list[dict]:
    return [{**c, "text": "".join(c["source"])} for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]


def test_numbered_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_", "09_", "10_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_skeleton(path):
    nb = cells(path)
    assert nb[0]["cell_type"] == "markdown" and nb[0]["text"].startswith(f"# {path.name[:2]} — ")
    assert "## Objectifs" in nb[0]["text"]
    assert nb[1]["cell_type"] == "code" and "google.colab" in nb[1]["text"]  # the Colab install cell
    setup = next(i for i, c in enumerate(nb) if c["text"].startswith("## Mise en place"))
    assert "pick_model(" in nb[setup + 1]["text"], "the cell after « Mise en place » picks the model"
    assert nb[-2]["cell_type"] == "markdown" and nb[-2]["text"].startswith("## À retenir")
    further = nb[-1]["text"]
    assert nb[-1]["cell_type"] == "markdown" and further.startswith("## Pour aller plus loin")
    assert "https://" in further and "Questions ouvertes" in further, "papers with links, and open questions"
    for before, cell in zip(nb[1:], nb[2:], strict=False):
        if cell["cell_type"] == "code":
            assert before["cell_type"] == "markdown", f"code cell with no explanation before it:\n{cell['text'][:200]}"


