"""The runtime package's import graph, read from the source with ``ast``: one way, imports at the top.

helpers never imports training/ or tools/ (they import helpers). Inside helpers, no import cycle, every
import of a helpers module at the top of its file, and a function-level import only of a heavy
third-party library named in HEAVY, with a comment that says why.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "helpers"
# slow to import (pandas also optional)
HEAVY = {"transformers", "tokenizers", "huggingface_hub", "circuitsvis", "pandas", "accelerate"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path):
    """(imported module, line, at the top of the file?) for every import statement of a file.

    ``from helpers import utils`` imports helpers.utils when utils is a module, else helpers itself.
    Imports under ``if TYPE_CHECKING:`` are left out (they never run).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    found.append((sub if sub in MODULES else child.module, child.lineno, top))
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            visit(child, inner)

    visit(tree, True)
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m, _, _ in imports(path) if m.split(".")[0] == "helpers" and m != name}
            for name, path in MODULES.items()}


def test_the_parser_sees_the_package():
    assert {"helpers", "helpers.model", "helpers.config", "helpers.loading", "helpers.hook_points",
            "helpers.conversion", "helpers.conversion.gpt2"} <= set(MODULES)
    assert "helpers.config" in graph()["helpers.model"]


def test_helpers_never_imports_training_or_tools():
    wrong = [f"{name}:{line} imports {m}" for name, path in MODULES.items() for m, line, _ in imports(path)
             if m.split(".")[0] in ("training", "tools")]
    assert wrong == []


def test_no_module_imports_the_package_root():
    # helpers/__init__ imports the classic API; a module importing ``helpers`` itself would close a cycle.
    wrong = [f"{name}:{line}" for name, path in MODULES.items() if name != "helpers"
             for m, line, _ in imports(path) if m == "helpers"]
    assert wrong == []


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    state, cycles = {}, []

    def walk(node, stack):  # depth first: meeting a module still open closes a cycle
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])
    return cycles


def test_the_layers_the_classic_library_keeps_apart():
    edges = graph()
    # HookedRootModule returns a dict of activations; HookedTransformer wraps it in an ActivationCache.
    assert "helpers.activation_cache" not in edges["helpers.hook_points"]
    # Loading knows files and the registry, not a course's game rules.
    assert "helpers.othello" not in edges["helpers.loading"]


def test_no_import_cycle():
    assert find_cycles(graph()) == []


def test_a_cycle_is_found():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_function_level_imports_are_heavy_libraries_with_a_reason():
    wrong = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for module, line, top in imports(path):
            if top:
                continue
            if module.split(".")[0] not in HEAVY:
                wrong.append(f"{name}:{line} imports {module} inside a function")
                continue
            # A comment on the import, or on the line above its block of imports.
            first = line - 1
            while first > 0 and lines[first - 1].lstrip().startswith(("import ", "from ")):
                first -= 1
            block = lines[max(first - 1, 0):line]
            if not any("#" in text for text in block):
                wrong.append(f"{name}:{line} imports {module} inside a function without saying why")
    assert wrong == []


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    from helpers import utils\n", [("helpers.utils", 2, False)]),
    ("import torch\nclass A:\n    def g(self):\n        import transformers\n", [("torch", 1, True),
                                                                              ("transformers", 4, False)]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from helpers import model\n", [("typing", 1, True)]),
])
def test_the_parser_finds_each_import_and_where_it_is(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imports(path) == expected

