"""The notebooks on the real loading path: a fake Hub cache filled with the README's ``hf download`` commands.

``python -m tests.real_path.run [--scale small|real] [NN ...]`` builds the cache in a temporary directory, then
executes each notebook (COURSE_EMBEDDED_MODELS unset, HF_HUB_OFFLINE=1) and prints its wall time and the
peak memory of its kernel. ``make test-real`` runs it at the real shapes; tests/real_path/test_real_path.py at
small ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REAL_MODEL = "(le vrai modèle)"  # what pick_model prints when it loads the real model


def readme_commands() -> list[str]:
    """The ``hf download`` commands the README gives to pre-download the notebooks' models."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- hf-download -->\n```bash\n(.*?)```", text, re.S)
    if block is None:
        raise ValueError("README.md has no ```bash block after <!-- hf-download -->")
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.startswith("hf download")]


def build_cache(cache_dir: Path, scale: str, commands: list[str] | None = None) -> None:
    from tests.fake_hub import FakeHub

    hub = FakeHub(cache_dir, scale)
    for command in commands or readme_commands():
        hub.hf_download(command)


def real_path_env(cache_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COURSE_EMBEDDED_MODELS"}
    env.update(HF_HUB_CACHE=str(cache_dir), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def execute(notebook: Path, cache_dir: Path, out: Path) -> dict:
    """Execute ``notebook`` on the real path in a fresh process; its time, the kernel's peak memory, its cells."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "tests.real_path.run", "--execute-one", str(notebook), str(out)],
                   env=real_path_env(cache_dir), cwd=ROOT, check=True)
    result = json.loads(out.with_suffix(".json").read_text())
    return {**result, "seconds": time.monotonic() - start}


def _execute_one(notebook: Path, out: Path) -> None:
    """In this process: run the notebook (its kernel is our child), write it and our children's peak RSS."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    error = None
    try:
        NotebookClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    except Exception as e:  # reported by the caller, with the notebook written for inspection
        error = f"{type(e).__name__}: {e}"[-3000:]
    nbformat.write(nb, out)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.with_suffix(".json").write_text(json.dumps({"error": error, "peak_mb": peak_mb, "slowest": slowest_cells(nb)}))


def slowest_cells(nb, n: int = 3) -> list[tuple[int, float]]:
    """The ``n`` longest code cells of an executed notebook: (index among all cells, seconds), longest first."""
    durations = []
    for i, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            durations.append((i, (end - start).total_seconds()))
    return sorted(durations, key=lambda d: -d[1])[:n]


def setup_output(nb_path: Path) -> str:
    """Text printed by the cell after « Mise en place » (the one that picks the model)."""
    cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
    i = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith("## Mise en place"))
    return "".join("".join(o.get("text", "")) for o in cells[i + 1].get("outputs", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="real", choices=["small", "real"])
    parser.add_argument("--execute-one", nargs=2, metavar=("NOTEBOOK", "OUT"))
    parser.add_argument("numbers", nargs="*", help="notebook numbers (default: all)")
    args = parser.parse_args()
    if args.execute_one:
        _execute_one(Path(args.execute_one[0]), Path(args.execute_one[1]))
        return
    notebooks = [nb for nb in NOTEBOOKS if not args.numbers or nb.name[:2] in args.numbers]
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        build_cache(Path(tmp) / "hub", args.scale)
        print(f"fake Hub cache ({args.scale} shapes) built in {time.monotonic() - start:.0f} s", flush=True)
        for nb in notebooks:
            r = execute(nb, Path(tmp) / "hub", Path(tmp) / nb.name)
            real = REAL_MODEL in setup_output(Path(tmp) / nb.name)
            status = r["error"] or ("ok" if real else "the set-up cell did not load the real model")
            slowest = ", ".join(f"cell {i} {seconds:.0f} s" for i, seconds in r["slowest"])
            print(f"{nb.stem:28s} {r['seconds']:6.0f} s  peak {r['peak_mb'] / 1024:4.1f} GB  {status}  "
                  f"(slowest: {slowest})", flush=True)
            failed += [nb.stem] if status != "ok" else []
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
