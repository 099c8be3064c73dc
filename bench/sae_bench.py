"""Item ``sae``: training notebook 10's TopK SAE on course-gpt2 (tokens per second, and the whole run against
the issue's goal of 3 minutes), and the loss of its held-out stories, which notebook 10 computes a dozen times:
``return_type="loss"`` (Unembed.loss: the shared columns' log-sum-exp in one term) against the cross-entropy of
the logits. ``python -m bench.sae_bench [--quick]`` runs it alone."""

from __future__ import annotations

import sys
import time

from bench.core import Check, Samples, header, interleaved, ratio_check, say, seconds_check

SETTINGS = dict(d_sae=1024, k=16, steps=300, batch_size=1024, seed=0)  # notebook 10's training cell
HOOK = "blocks.2.hook_resid_pre"  # notebook 10's hook on course-gpt2 (blocks.{n_layers // 2})


def run(quick: bool) -> list[Check]:
    import torch

    from helpers import HookedTransformer, utils
    from helpers import sae as S

    header("SAE training: notebook 10's TopK SAE on course-gpt2 (1024 features, k=16, 300 steps of 1024 tokens)")
    torch.set_grad_enabled(False)
    model = HookedTransformer.from_pretrained("course-gpt2")
    tokens = S.story_tokens(model, 400, seed=0)
    settings = {**SETTINGS, "steps": 30} if quick else SETTINGS
    runs = Samples("train_sae (collection + training)")
    for _ in range(1 if quick else 3):
        start = time.perf_counter()
        sae = S.train_sae(model, HOOK, tokens, verbose=False, **settings)
        runs.times.append(time.perf_counter() - start)
    say(runs.line())
    rate = settings["steps"] * settings["batch_size"] / runs.median
    say(f"{rate:,.0f} training tokens per second (median run, collection included); torch threads "
        f"{torch.get_num_threads()}")
    held_out = S.story_tokens(model, 100, seed=1)
    say(f"loss recovered of the last run on held-out stories: {S.loss_recovered(model, sae, held_out):.3f}")
    losses = interleaved({"model(tokens, return_type='loss')": lambda: model(held_out, return_type="loss"),
                          "lm_cross_entropy_loss(model(tokens))": lambda: utils.lm_cross_entropy_loss(
                              model(held_out), held_out)}, rounds=1 if quick else 3)
    fused, dense = losses.values()
    say(f"loss of the {held_out.shape[0]} held-out stories ({held_out.numel()} positions):")
    say(fused.line())
    say(dense.line())
    goal = None if quick else 180.0
    return [seconds_check("sae", "train_sae, notebook settings", runs, "<=" if goal else None, goal),
            Check("sae", "SAE training tokens per second", round(rate), "n"),
            ratio_check("sae", "loss of the logits / return_type='loss'", dense, fused)]


if __name__ == "__main__":
    checks = run("--quick" in sys.argv)
    for check in checks:
        say(check.line())
