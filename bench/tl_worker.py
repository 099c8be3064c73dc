"""TransformerLens 3.5.1's side of the bench's comparisons, run by a Python that has transformer_lens.

Started by bench/tl_reference.py as ``TL_PYTHON bench/tl_worker.py``; it reads one JSON command per line
on stdin and answers one JSON line on stdout, so that the bench can interleave its own repetitions with
TransformerLens' (A B, B A, ...) in one run. This file is never imported by helpers or by the tests, and the
project does not depend on transformer_lens: it is the yardstick, installed in a scratch venv.

Commands:
    {"cmd": "setup", "weights": PATH, "config": {...}, "tokens": PATH}  load the same weights and tokens
    {"cmd": "run", "what": NAME}  one timed call; answers {"seconds": s, "result": PATH of the tensor}
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig, patching

torch.set_grad_enabled(False)
if os.environ.get("BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
CLOCK = time.process_time if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter
STATE: dict = {}


def setup(weights: str, config: dict, tokens: str) -> dict:
    cfg = HookedTransformerConfig(**config)
    model = HookedTransformer(cfg)
    model.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    model.eval()
    data = torch.load(tokens, weights_only=True)
    _, clean_cache = model.run_with_cache(data["clean"])
    answer, wrong = int(data["answer"]), int(data["wrong"])

    def metric(logits):  # logit difference at the last position, as the helpers side computes it
        return (logits[:, -1, answer] - logits[:, -1, wrong]).mean()

    STATE.update(model=model, corrupted=data["corrupted"], cache=clean_cache, metric=metric)
    return {"ok": True, "version": importlib.metadata.version("transformer_lens")}


def run(what: str, out: str) -> dict:
    model, corrupted, cache, metric = (STATE[k] for k in ("model", "corrupted", "cache", "metric"))
    fn = {
        "resid_pre": lambda: patching.get_act_patch_resid_pre(model, corrupted, cache, metric),
        "head_out_all_pos": lambda: patching.get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric),
        "forward": lambda: model(corrupted),
        "run_with_cache": lambda: model.run_with_cache(corrupted)[0],
    }[what]
    t0 = CLOCK()
    result = fn()
    seconds = CLOCK() - t0
    torch.save(result.detach().clone() if what in ("resid_pre", "head_out_all_pos") else result[:, -1], out)
    return {"seconds": seconds}


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request.pop("cmd")
        try:
            reply = setup(**request) if cmd == "setup" else run(**request)
        except Exception as e:  # reported to the bench, which prints it as the item's error
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
