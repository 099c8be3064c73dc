"""Timing, checks against goals, and printing, shared by the bench items."""

from __future__ import annotations

import gc
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: What the timings read: "wall" (time.perf_counter, the default) or "cpu" (time.process_time, this process's CPU
#: time: on a machine busy with other work, less of the others' load gets in; run with --threads 1, where threads
#: waiting for each other do not count). Set by ``python -m bench --clock``.
CLOCK = "wall"
DEVICE = "cpu"  # where the forward and generate items run (--device)


def clock() -> float:
    return time.process_time() if CLOCK == "cpu" else time.perf_counter()


def synchronize() -> None:
    """Wait for the device's queued work (a GPU returns before it has computed), so that a timing covers it."""
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.synchronize()

# ------------------------------------------------------------------------------------------------
# Samples and interleaved timing
# ------------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """The durations (seconds) of repeated runs of one side of a comparison."""

    name: str
    times: list[float] = field(default_factory=list)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def line(self, width: int = 34) -> str:
        return (f"  {self.name:<{width}} min {fmt_s(self.min)}  median {fmt_s(self.median)}"
                f"  (n={len(self.times)})")


def fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:7.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:7.1f} ms"
    return f"{seconds:7.3f} s "


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                budget_s: float | None = None, min_rounds: int = 3) -> dict[str, Samples]:
    """Time each function ``rounds`` times, alternating the order every round (A B C, C B A, ...).

    ``warmup`` untimed calls of each come first. With ``budget_s``, stop early once at least
    ``min_rounds`` rounds are done and the timed rounds have taken longer than the budget.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    synchronize()
    samples = {name: Samples(name) for name in fns}
    names = list(fns)
    start = time.perf_counter()
    for r in range(rounds):
        gc.collect()
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = clock()
            fns[name]()
            synchronize()
            samples[name].times.append(clock() - t0)
        if budget_s is not None and r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return samples


def run_python(code: str, env: dict | None = None, timeout: float = 300, args: tuple[str, ...] = ()) -> str:
    """Run ``python [args] -c code`` in a fresh process from the repository root; its stdout's last line."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, *args, "-c", code], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def run_python_json(code: str, **kwargs) -> dict:
    return json.loads(run_python(code, **kwargs))


# ------------------------------------------------------------------------------------------------
# Checks against goals
# ------------------------------------------------------------------------------------------------

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass
class Check:
    """One measured value against its goal. ``passed`` is None for context (no goal) or a skip."""

    item: str
    label: str
    value: float | None
    unit: str  # "x" (a ratio), "s" (seconds) or "n" (a count)
    op: str | None = None
    goal: float | None = None
    detail: str = ""  # e.g. the ratio of the mins, printed next to the value
    skipped: str = ""  # why the measure was not taken
    error: str = ""  # the measured thing failed (e.g. a notebook cell raised): a FAIL whatever the value

    @property
    def passed(self) -> bool | None:
        if self.error:
            return False
        if self.skipped or self.op is None or self.value is None:
            return None
        return bool(_OPS[self.op](self.value, self.goal))

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "SKIP"
        if self.error:
            return "FAIL"
        return {True: "PASS", False: "MISS", None: "info"}[self.passed]

    def value_str(self) -> str:
        if self.value is None:
            return "-"
        if self.unit == "x":
            return f"{self.value:.2f}x"
        return f"{self.value:.2f} s" if self.unit == "s" else f"{self.value:g}"

    def goal_str(self) -> str:
        if self.op is None:
            return "-"
        return f"{self.op} {self.goal:g}" + {"x": "x", "s": " s"}.get(self.unit, "")

    def line(self) -> str:
        if self.skipped:
            return f"  {self.label}: SKIP ({self.skipped})"
        extra = f"  [{self.detail}]" if self.detail else ""
        if self.error:
            extra += f"  ({self.error})"
        goal = f"  goal {self.goal_str()}" if self.op else ""
        return f"  => {self.label}: {self.value_str()}{extra}{goal}  {self.verdict}"


def ratio_check(item: str, label: str, num: Samples, den: Samples, op: str | None = None,
                goal: float | None = None) -> Check:
    """num / den from the medians; the ratio of the mins goes in ``detail``."""
    return Check(item, label, num.median / den.median, "x", op, goal,
                 detail=f"ratio of mins {num.min / den.min:.2f}x")


def seconds_check(item: str, label: str, s: Samples, op: str | None = "<", goal: float | None = None) -> Check:
    """A duration against a goal, judged on the median; the min goes in ``detail``."""
    return Check(item, label, s.median, "s", op, goal, detail=f"min {s.min:.2f} s, n={len(s.times)}")


# ------------------------------------------------------------------------------------------------
# Printing
# ------------------------------------------------------------------------------------------------


def header(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 86 - len(title)), flush=True)


def say(text: str = "") -> None:
    print(text, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    import torch

    try:
        import importlib.metadata as md

        tf_version = md.version("transformers")
    except Exception:  # pragma: no cover - transformers is a dependency
        tf_version = "absent"
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores ({affinity} usable by this process)",
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {tf_version}, "
        f"torch threads {torch.get_num_threads()}",
        f"load average (1/5/15 min) at start: {load}"
        + ("  <- the machine is busy: ratios are rough" if _busy() else ""),
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
    ]


def _busy() -> bool:
    try:
        return os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1)
    except OSError:
        return False


def summary(checks: list[Check]) -> str:
    rows = [("item", "measure", "value", "goal", "result")]
    rows += [(c.item, c.label, c.value_str() if not c.skipped else "-", c.goal_str(), c.verdict) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
