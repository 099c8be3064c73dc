"""``python -m bench [--quick] [--notebooks] [--only NAME ...]``: see bench/__init__.py."""

from __future__ import annotations

import argparse
import sys
import time
import traceback

from bench import core

ITEMS = ("patching", "attribution", "forward", "families", "generate", "memory", "sae", "import", "load", "notebooks")


def _runner(name: str):
    if name == "patching":
        from bench.patching_bench import run
    elif name == "attribution":
        from bench.patching_bench import run_attribution as run
    elif name == "forward":
        from bench.forward_bench import run
    elif name == "families":
        from bench.forward_bench import run_families as run
    elif name == "generate":
        from bench.big_models_bench import run_generate as run
    elif name == "memory":
        from bench.big_models_bench import run_memory as run
    elif name == "sae":
        from bench.sae_bench import run
    elif name == "import":
        from bench.startup_bench import run_import as run
    elif name == "load":
        from bench.startup_bench import run_load as run
    else:
        from bench.notebooks_bench import run
    return run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Speed measurements of helpers.")
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke test, rough numbers")
    parser.add_argument("--notebooks", action="store_true",
                        help="also execute the notebook series (slow: several minutes)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the in-process items (default: torch's own choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time by the wall clock (default) or by the process's CPU time (with --threads 1: less "
                             "sensitive to other work on the machine)")
    parser.add_argument("--device", default="cpu",
                        help="where the forward and generate items run (default cpu; e.g. cuda on a GPU machine)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only these items (repeatable or comma-separated): {', '.join(ITEMS)}")
    args = parser.parse_args(argv)
    only = [n.strip() for value in args.only for n in value.split(",") if n.strip()]
    unknown = sorted(set(only) - set(ITEMS))
    if unknown:
        parser.error(f"unknown item(s) {unknown}; the items are {', '.join(ITEMS)}")
    if only:
        args.items = [n for n in ITEMS if n in only]
    else:
        args.items = [n for n in ITEMS if n != "notebooks" or args.notebooks]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    core.CLOCK = args.clock
    core.DEVICE = args.device
    core.say("helpers benchmark" + ("  (--quick: few repetitions, rough numbers)" if args.quick else "")
             + ("  (--clock cpu: times are this process's CPU time)" if args.clock == "cpu" else ""))
    for line in core.machine_lines():
        core.say(line)
    if "notebooks" not in args.items:
        core.say("(the notebooks are not executed: add --notebooks)")
    checks: list[core.Check] = []
    for name in args.items:
        t0 = time.perf_counter()
        try:
            checks += _runner(name)(args.quick)
        except Exception as e:
            traceback.print_exc()
            checks.append(core.Check(name, "ERROR", None, "s", error=f"{type(e).__name__}: {e}"[:100]))
        core.say(f"  ({name}: {time.perf_counter() - t0:.0f} s)")

    core.header("summary")
    core.say("ratios from the medians of interleaved repetitions; durations are medians")
    core.say(core.summary(checks))
    missed = [c for c in checks if c.passed is False]
    errors = [c for c in checks if c.label == "ERROR"]
    core.say(f"\n{sum(c.passed is True for c in checks)} PASS, {len(missed)} MISS or FAIL, "
             f"{sum(c.verdict == 'SKIP' for c in checks)} SKIP; total {time.perf_counter() - start:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
