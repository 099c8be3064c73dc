"""Generate the learner's notebooks (exercices/NN_*.ipynb) from the committed ones (notebooks/).

An exercise in a committed notebook is a run of cells: a statement (markdown, "### Exercice NN.K — ..."), a
solution cell whose first line is ``# EXERCICE NN.K — solution`` and which defines one function with a
docstring, a check cell (first line ``# EXERCICE NN.K — vérification``), a folded hint and a folded solution
(``<details><summary>Solution de l'exercice NN.K</summary>``, the solution cell's code). The learner's version
replaces each solution cell by its stub (the signature and docstring, then ``raise NotImplementedError``) and
clears the outputs of the exercise's code cells; every other cell is left as it is.

    python -m tools.make_exercices          # write exercices/ (what `make exercices` runs)
    python -m tools.make_exercices --sync   # rewrite the folded solutions of notebooks/ from the solution cells
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = re.compile(r"# EXERCICE (\d\d\.\d+) — solution\n")
CHECK = re.compile(r"# EXERCICE (\d\d\.\d+) — vérification\n")
FOLDED_SOLUTION = re.compile(r"<details><summary>Solution de l'exercice (\d\d\.\d+)</summary>")


def source(cell) -> str:
    return "".join(cell["source"])


def set_source(cell, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def exercise_id(cell, pattern: re.Pattern) -> str | None:
    match = pattern.match(source(cell))
    return match.group(1) if match else None


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def dumps(nb: dict) -> str:
    """The notebook as Jupyter writes it (one-space indent, UTF-8, final newline)."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def stub(solution: str) -> str:
    """The learner's cell for a solution cell: the function's signature and docstring, then a stub body."""
    number = SOLUTION.match(solution).group(1)
    code = solution[SOLUTION.match(solution).end():]
    body = ast.parse(code).body
    if len(body) != 1 or not isinstance(body[0], ast.FunctionDef) or ast.get_docstring(body[0]) is None:
        raise ValueError(f"exercise {number}: the solution cell must define exactly one function with a docstring")
    docstring = body[0].body[0]
    lines = code.splitlines()
    indent = " " * docstring.col_offset
    head = "\n".join(lines[: docstring.end_lineno])
    return (f"# EXERCICE {number} — à compléter\n{head}\n"
            f'{indent}raise NotImplementedError("exercice {number} : complétez cette fonction")')


def folded_solution(solution: str) -> str:
    """The markdown cell that shows a solution, folded."""
    number = SOLUTION.match(solution).group(1)
    code = solution[SOLUTION.match(solution).end():].rstrip("\n")
    return (f"<details><summary>Solution de l'exercice {number}</summary>\n\n```python\n{code}\n```\n\n"
            "</details>")


def solutions(nb) -> dict[str, str]:
    """Exercise number -> source of its solution cell."""
    return {number: source(cell) for cell in nb["cells"]
            if cell["cell_type"] == "code" and (number := exercise_id(cell, SOLUTION))}


def stale_folded_solutions(nb) -> list[str]:
    """Numbers of the exercises whose folded solution differs from their solution cell."""
    sources = solutions(nb)
    return [number for cell in nb["cells"] if cell["cell_type"] == "markdown"
            and (number := exercise_id(cell, FOLDED_SOLUTION)) and source(cell) != folded_solution(sources[number])]


def sync(nb) -> None:
    """Rewrite every folded solution from its solution cell (in place)."""
    sources = solutions(nb)
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown" and (number := exercise_id(cell, FOLDED_SOLUTION)):
            set_source(cell, folded_solution(sources[number]))


def learner_version(nb):
    """A copy of a committed notebook with each solution cell replaced by its stub and exercise outputs cleared."""
    stale = stale_folded_solutions(nb)
    if stale:
        raise ValueError(f"folded solutions out of date for exercises {stale}: "
                         "run python -m tools.make_exercices --sync")
    out = copy.deepcopy(nb)
    for cell in out["cells"]:
        if cell["cell_type"] != "code":
            continue
        if exercise_id(cell, SOLUTION):
            set_source(cell, stub(source(cell)))
        elif not exercise_id(cell, CHECK):
            continue
        cell["outputs"] = []
        cell["execution_count"] = None
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync", action="store_true", help="rewrite the folded solutions in notebooks/")
    args = parser.parse_args(argv)
    (ROOT / "exercices").mkdir(exist_ok=True)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = read(path)
        if args.sync:
            sync(nb)
            path.write_text(dumps(nb), encoding="utf-8")
        if not solutions(nb):
            continue
        target = ROOT / "exercices" / path.name
        text = dumps(learner_version(nb))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            print(f"écrit {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
