"""The course's Jupyter kernel: registered by ``make install``, named in every notebook's metadata.

    python -m tools.kernelspec --install                             # register it (what `make install` runs)
    python -m tools.kernelspec notebooks/*.ipynb exercices/*.ipynb   # name it in the notebooks' metadata

The kernel runs the Python that runs this command (the course's .venv); registering it again updates it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ipykernel.kernelspec import install

from tools.make_exercices import dumps, read

KERNEL_NAME = "cours-interpretabilite"
DISPLAY_NAME = "Python (cours d'interprétabilité)"
KERNELSPEC = {"display_name": DISPLAY_NAME, "language": "python", "name": KERNEL_NAME}


def register() -> str:
    """Register the kernel for the current user, running this Python; returns the kernelspec's folder."""
    return install(user=True, kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME)


def stamp(nb: dict) -> bool:
    """Name the course's kernel in the notebook's metadata (in place); returns whether it changed."""
    metadata = nb.get("metadata") if isinstance(nb, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError("not a notebook: no metadata dict")
    if metadata.get("kernelspec") == KERNELSPEC:
        return False
    nb["metadata"] = dict(sorted({**metadata, "kernelspec": dict(KERNELSPEC)}.items()))  # keys sorted, as Jupyter
    return True


def stamp_file(path: Path) -> bool:
    """Stamp one .ipynb file; returns whether it was rewritten."""
    path = Path(path)
    if path.suffix != ".ipynb" or not path.is_file():
        raise ValueError(f"{path}: not a notebook file (.ipynb)")
    nb = read(path)
    if not stamp(nb):
        return False
    path.write_text(dumps(nb), encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.kernelspec", description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="register the kernel for the current user")
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks whose metadata must name the kernel")
    args = parser.parse_args(argv)
    if not args.install and not args.notebooks:
        parser.error("give --install or notebooks to stamp")
    if args.install:
        print(f"noyau « {DISPLAY_NAME} » ({KERNEL_NAME}) : {register()}")
    try:
        for path in args.notebooks:
            if stamp_file(path):
                print(f"écrit {path}")
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
