"""TransformerLens 3.5.1 as a yardstick, in its own process (see bench/tl_worker.py).

``TL_PYTHON`` names a Python interpreter that has ``transformer_lens`` installed (a scratch venv: the project
does not depend on it). Without it, the comparisons that need it are skipped and say how to enable them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench import core
from bench.core import REPO, Samples

SKIP_REASON = ("set TL_PYTHON to a Python with transformer_lens==3.5.1 (e.g. a scratch venv: "
               "python3 -m venv /tmp/tl && /tmp/tl/bin/pip install transformer_lens==3.5.1), "
               "then make bench TL_PYTHON=/tmp/tl/bin/python")


def tl_python() -> str | None:
    path = os.environ.get("TL_PYTHON")
    return path if path and Path(path).exists() else None


class TLWorker:
    """A TransformerLens process holding the same weights and tokens as the bench's HookedTransformer."""

    def __init__(self, python: str):
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-tl-")
        # -I: the script directory (bench/, whose profile.py would shadow the stdlib) stays off sys.path
        # TQDM_DISABLE: TransformerLens' patching functions draw progress bars on stderr, one per map.
        # BENCH_THREADS, BENCH_CLOCK: the same torch threads and clock as this process (--threads, --clock).
        self.proc = subprocess.Popen([python, "-I", str(REPO / "bench" / "tl_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=self.tmp.name,
                                     env={**os.environ, "TQDM_DISABLE": "1", "BENCH_CLOCK": core.CLOCK,
                                          "BENCH_THREADS": str(torch.get_num_threads())})
        self.version = "?"

    def _ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the TransformerLens worker stopped (see its error above)")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"TransformerLens worker: {reply['error']}")
        return reply

    def setup(self, model, clean: torch.Tensor, corrupted: torch.Tensor, answer: int, wrong: int) -> None:
        """Send the model's (unprocessed) weights and config, and the tokens of the comparison."""
        weights, tokens = Path(self.tmp.name, "weights.pt"), Path(self.tmp.name, "tokens.pt")
        torch.save(model.state_dict(), weights)
        torch.save({"clean": clean, "corrupted": corrupted, "answer": answer, "wrong": wrong}, tokens)
        cfg = model.cfg
        config = dict(n_layers=cfg.n_layers, d_model=cfg.d_model, n_ctx=cfg.n_ctx, d_head=cfg.d_head,
                      n_heads=cfg.n_heads, d_mlp=cfg.d_mlp, d_vocab=cfg.d_vocab, act_fn=cfg.act_fn,
                      normalization_type=cfg.normalization_type, device="cpu")
        self.version = self._ask(cmd="setup", weights=str(weights), config=config, tokens=str(tokens))["version"]

    def run(self, what: str) -> tuple[float, torch.Tensor]:
        """One call timed inside the worker (no IPC in the figure), and its result."""
        out = Path(self.tmp.name, "result.pt")
        seconds = self._ask(cmd="run", what=what, out=str(out))["seconds"]
        return seconds, torch.load(out, weights_only=True)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.tmp.cleanup()


def interleaved_with_tl(ours: dict[str, Callable[[], object]], worker: TLWorker, theirs: dict[str, str],
                        rounds: int, budget_s: float, min_rounds: int = 5) -> dict[str, Samples]:
    """Like bench.core.interleaved, with some sides run by the TransformerLens worker (name -> its command)."""
    names = list(ours) + list(theirs)
    for fn in ours.values():
        fn()
    for what in theirs.values():
        worker.run(what)
    samples = {name: Samples(name) for name in names}
    start = time.perf_counter()
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            if name in ours:
                t0 = core.clock()
                ours[name]()
                samples[name].times.append(core.clock() - t0)
            else:
                samples[name].times.append(worker.run(theirs[name])[0])
        if r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return samples
