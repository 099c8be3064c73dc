"""What the notebooks' claims tests share: reading a notebook's stored outputs (text and plotly figures) and
its prose (the embedded course-gpt2 some claims are checked against is tests/conftest.py's fixture).

nbval proves that the committed outputs reproduce on the embedded models; the test_claims_NN.py files prove that
the prose around them is true of them. Each test finds one code cell by a line of its source, reads what that
cell printed or drew, and asserts the claim the notebook's text makes about it (a sign, an order, "above 1",
"the best head"). A notebook re-recorded on a retrained model whose outputs contradict its text fails there.
One test per claim, named after the notebook and the claim.
"""

import base64
import json
import re
from functools import cache
from pathlib import Path

import numpy as np
import torch

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NUMBER = r"[-+]?\d+(?:\.\d+)?"


@cache
def _cells(prefix: str) -> list[dict]:
    (path,) = NOTEBOOKS.glob(f"{prefix}_*.ipynb")
    return json.loads(path.read_text())["cells"]


def printed(prefix: str, code_line: str) -> str:
    """The text printed by the one code cell of notebook ``prefix`` whose source contains ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1, f"{len(cells)} code cells of notebook {prefix} contain {code_line!r}"
    texts = []
    for output in cells[0]["outputs"]:
        if "text" in output:
            texts.append("".join(output["text"]))
        elif "text/plain" in output.get("data", {}):
            texts.append("".join(output["data"]["text/plain"]))
    text = "".join(texts)
    assert text, f"the cell of notebook {prefix} containing {code_line!r} has no stored text output"
    return text


def values(text: str, pattern: str) -> list[float]:
    """Every number captured by ``pattern`` (each group written as {n}) in ``text``, in order."""
    matches = re.findall(pattern.replace("{n}", f"({NUMBER})"), text)
    found = [float(x) for m in matches for x in (m if isinstance(m, tuple) else (m,))]
    assert found, f"{pattern!r} not found in:\n{text}"
    return found


def value(text: str, pattern: str) -> float:
    (found,) = values(text, pattern)
    return found


def markdown(prefix: str, needle: str) -> str:
    cells = [c for c in _cells(prefix) if c["cell_type"] == "markdown" and needle in "".join(c["source"])]
    assert len(cells) == 1, f"{len(cells)} markdown cells of notebook {prefix} contain {needle!r}"
    return "".join(cells[0]["source"])


# Numbers as the prose spells them, 0 to 30.
NUMBER_WORDS = {"fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze",
                       "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit", "dix-neuf", "vingt",
                       "vingt et un", "vingt-deux", "vingt-trois", "vingt-quatre", "vingt-cinq", "vingt-six",
                       "vingt-sept", "vingt-huit", "vingt-neuf", "trente"],
                "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                       "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                       "twenty", "twenty-one", "twenty-two", "twenty-three", "twenty-four", "twenty-five", "twenty-six",
                       "twenty-seven", "twenty-eight", "twenty-nine", "thirty"]}


def fr(x: float, digits: int = 2) -> str:
    """A number as the French prose writes it: 0.89 -> '0,89'."""
    return f"{x:.{digits}f}".replace(".", ",")


def heatmaps(prefix: str, code_line: str) -> tuple[dict, list[torch.Tensor]]:
    """The layout and the z arrays (of the traces that have one) of the plotly figure drawn by the one code cell
    containing ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1
    (figure,) = [o["data"]["application/vnd.plotly.v1+json"] for o in cells[0]["outputs"]
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]
    arrays = []
    for trace in (t for t in figure["data"] if "z" in t):
        z = trace["z"]
        array = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]) if isinstance(z, dict) else np.array(z)
        shape = [int(n) for n in z["shape"].split(",")] if isinstance(z, dict) and "shape" in z else array.shape
        arrays.append(torch.tensor(array.reshape(shape).astype("float64")))
    return figure["layout"], arrays


def scatter_traces(prefix: str, code_line: str) -> tuple[list[str], list[tuple]]:
    """The hover names of the first trace and the (x, y) of each trace (numbers as tensors, labels as lists) of
    the plotly figure drawn by the one code cell containing ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1
    (figure,) = [o["data"]["application/vnd.plotly.v1+json"] for o in cells[0]["outputs"]
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]

    def array(data) -> torch.Tensor | list[str]:
        if isinstance(data, dict):
            return torch.tensor(np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).astype("float64"))
        return data if isinstance(data[0], str) else torch.tensor(data, dtype=torch.float64)  # labels stay labels

    return figure["data"][0].get("hovertext"), [(array(t["x"]), array(t["y"])) for t in figure["data"]]


def figure_text(prefix: str, code_line: str) -> list[list[str]]:
    """The text of the heatmap drawn by the one code cell of notebook ``prefix`` containing ``code_line``."""
    cells = [c for c in _cells(prefix) if c["cell_type"] == "code" and code_line in "".join(c["source"])]
    assert len(cells) == 1
    (figure,) = [o["data"]["application/vnd.plotly.v1+json"] for o in cells[0]["outputs"]
                 if "application/vnd.plotly.v1+json" in o.get("data", {})]
    return figure["data"][0]["text"]
