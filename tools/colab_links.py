"""Pin the Colab badges (README.md) and the notebooks' Colab cells to a tag or commit of the public repository.

    python -m tools.colab_links --repo owner/name --ref v1.0 README.md notebooks/*.ipynb exercices/*.ipynb
    make colab-links REPO=owner/name REF=v1.0     # the same, on README.md, notebooks/ and exercices/

A badge opens ``github/<repo>/blob/<ref>/<notebook>`` and the notebook's Colab cell installs the course from
that same ref, so what Colab shows and the code it runs cannot drift apart. The ref must name the commit that
records this change: a tag created after committing it (``git tag v1.0``), not the commit before it, whose
notebooks would still clone the previous pin. Running it again with another ref moves every pin.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tools.make_exercices import dumps, read, set_source, source

REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # a tag, branch or commit without "/" (it sits in URL paths)
# The command of the Colab cell, pinned, or as it was before pins (a clone of the default branch).
PINNED = re.compile(r"!git init -q cours_interp && git -C cours_interp fetch -q --depth 1 "
                    r"https://github\.com/(?P<repo>\S+) (?P<ref>\S+) && git -C cours_interp checkout -q FETCH_HEAD")
UNPINNED = re.compile(r"!git clone --depth 1 https://github\.com/(?P<repo>\S+) cours_interp")
BADGE = re.compile(r"(https://colab\.research\.google\.com/github/)(?P<repo>[^\s()]+?)/blob/(?P<ref>[^/\s()]+)/"
                   r"(?=(?:notebooks|exercices)/[^\s()]+\.ipynb)")


def clone_command(repo: str, ref: str) -> str:
    """The shell line of the Colab cell: the repository at ``ref`` (tag, branch or commit) in ./cours_interp."""
    return (f"!git init -q cours_interp && git -C cours_interp fetch -q --depth 1 https://github.com/{repo} {ref}"
            " && git -C cours_interp checkout -q FETCH_HEAD")


def check_pin(repo: str, ref: str) -> None:
    if not REPO.fullmatch(repo):
        raise ValueError(f"repository {repo!r}: expected owner/name")
    if not REF.fullmatch(ref):
        raise ValueError(f"ref {ref!r}: expected a tag or commit (letters, digits, '.', '_', '-'; no '/')")


def colab_cell(nb: dict) -> dict:
    """The notebook's Colab install cell (its first code cell, which tests for google.colab)."""
    cell = next((c for c in nb.get("cells", []) if c.get("cell_type") == "code"), None)
    if cell is None or "google.colab" not in source(cell):
        raise ValueError("no Colab cell: the first code cell must test for google.colab")
    return cell


def colab_pin(nb: dict) -> tuple[str, str]:
    """(repository, ref) that the notebook's Colab cell installs; an unpinned clone reads as ref ``main``."""
    text = source(colab_cell(nb))
    if match := PINNED.search(text):
        return match["repo"], match["ref"]
    if match := UNPINNED.search(text):
        return match["repo"], "main"
    raise ValueError("the Colab cell clones no repository")


def badge_pins(readme: str) -> dict[str, tuple[str, str]]:
    """Notebook path (``notebooks/NN_x.ipynb``) -> (repository, ref) of its Colab badge in the README."""
    return {readme[m.end():].split(")", 1)[0]: (m["repo"], m["ref"]) for m in BADGE.finditer(readme)}


def pin_notebook(nb: dict, repo: str, ref: str) -> None:
    """Point the notebook's Colab cell at ``repo`` at ``ref`` (in place)."""
    cell = colab_cell(nb)
    text, count = PINNED.subn(clone_command(repo, ref), source(cell))
    if not count:
        text, count = UNPINNED.subn(clone_command(repo, ref), text)
    if count != 1:
        raise ValueError("the Colab cell must run exactly one clone of the course")
    set_source(cell, text)


def pin_readme(text: str, repo: str, ref: str) -> str:
    """The README with every Colab badge opening the notebook from ``repo`` at ``ref``."""
    text, count = BADGE.subn(lambda m: f"{m[1]}{repo}/blob/{ref}/", text)
    if not count:
        raise ValueError("no Colab badge (https://colab.research.google.com/github/…/blob/…) in the README")
    return text


def pinned_text(path: Path, repo: str, ref: str) -> str:
    """The text of a notebook (.ipynb), or of a markdown file with badges, once pinned."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if path.suffix != ".ipynb":
            return pin_readme(path.read_text(encoding="utf-8"), repo, ref)
        nb = read(path)
        pin_notebook(nb, repo, ref)
        return dumps(nb)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.colab_links", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="the public repository, owner/name")
    parser.add_argument("--ref", required=True, help="the tag (or commit) that Colab opens and installs")
    parser.add_argument("files", nargs="+", type=Path, help="README.md and the notebooks")
    args = parser.parse_args(argv)
    try:
        check_pin(args.repo, args.ref)
        texts = {path: pinned_text(path, args.repo, args.ref) for path in args.files}  # all checked, then written
    except ValueError as error:
        parser.error(str(error))
    for path, text in texts.items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"écrit {path}")
    print(f"Colab : {args.repo} à {args.ref} ; committez, puis créez {args.ref} sur ce commit s'il s'agit d'un tag")
    return 0


if __name__ == "__main__":
    sys.exit(main())
