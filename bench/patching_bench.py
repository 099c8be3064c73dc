"""Item ``patching``: batched activation patching vs the seed-style loop (one pass per patch)."""

from __future__ import annotations

import contextlib
import io
from functools import partial

from bench.core import Check, header, interleaved, ratio_check, say

CLEAN = "After John and Mary went to the store, Mary gave a bottle of milk to"
CORRUPTED = "After John and Mary went to the store, John gave a bottle of milk to"


def load_course_gpt2():
    """The embedded course-gpt2, or a random model of its architecture when its files are absent."""
    from helpers import course_models
    from helpers.model import HookedTransformer, HookedTransformerConfig

    problem = "data/models/course-gpt2 is absent"
    if (course_models.MODELS_DIR / "course-gpt2" / "config.json").exists():
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                model = HookedTransformer.from_pretrained("course-gpt2", device="cpu")
            return model, "embedded course-gpt2 (from_pretrained)"
        except Exception as e:  # e.g. a manifest being rewritten by a training run
            problem = f"course-gpt2 failed to load ({type(e).__name__}: {str(e)[:120]})"
    from training.train import SPECS

    cfg = HookedTransformerConfig(**{**SPECS["course-gpt2"].cfg, "seed": 0, "device": "cpu"})
    model = HookedTransformer(cfg).eval()
    return model, (f"FALLBACK: {problem}; a RANDOM HookedTransformer with the config of "
                   "training.train.SPECS['course-gpt2'] stands in (same shapes, same cost)")


def patch_resid_at(resid, hook, position: int, clean_cache):
    """The seed's hook: the clean residual stream at one position. resid: [batch pos d_model]."""
    resid[:, position, :] = clean_cache[hook.name][:, position, :]
    return resid


def run(quick: bool) -> list[Check]:
    import torch

    from helpers import utils
    from helpers.patching import activation_patching

    header("1. activation patching: batched vs one run_with_hooks per (layer, position)")
    torch.set_grad_enabled(False)
    model, source = load_course_gpt2()
    say(f"model: {source}")
    cfg = model.cfg
    clean_tokens, corrupted_tokens = model.to_tokens(CLEAN), model.to_tokens(CORRUPTED)
    assert clean_tokens.shape == corrupted_tokens.shape
    john, mary = model.to_single_token(" John"), model.to_single_token(" Mary")

    def metric(logits):  # logit difference of the clean answer at the last position; [batch pos d_vocab]
        return (logits[:, -1, john] - logits[:, -1, mary]).mean()

    _, clean_cache = model.run_with_cache(clean_tokens)
    n_layers, n_pos = cfg.n_layers, clean_tokens.shape[1]
    say(f"{n_layers} layers x {n_pos} positions = {n_layers * n_pos} patches; d_model {cfg.d_model}, "
        f"d_vocab {cfg.d_vocab}; prompt {CLEAN!r}, corrupted with John")

    def loop():
        out = torch.zeros(n_layers, n_pos)
        for layer in range(n_layers):
            name = utils.get_act_name("resid_pre", layer)
            for position in range(n_pos):
                hook = partial(patch_resid_at, position=position, clean_cache=clean_cache)
                logits = model.run_with_hooks(corrupted_tokens, fwd_hooks=[(name, hook)])
                out[layer, position] = metric(logits)
        return out

    def batched():
        return activation_patching(model, corrupted_tokens, clean_cache, metric, kind="resid_pre").values

    def batched_last():
        return activation_patching(model, corrupted_tokens, clean_cache, metric, kind="resid_pre",
                                   logit_positions=-1).values

    reference = loop()
    for name, fn in (("batched", batched), ("batched logit_positions=-1", batched_last)):
        gap = (fn() - reference).abs().max().item()
        say(f"same map as the loop ({name}): max |difference| {gap:.2e} "
            + ("ok" if gap < 1e-3 * max(1.0, reference.abs().max().item()) else "<- DIFFERENT"))

    rounds, budget = (3, None) if quick else (21, 45.0)
    s = interleaved({"seed loop (1 pass per patch)": loop, "activation_patching": batched,
                     "activation_patching, logits at -1": batched_last}, rounds=rounds, warmup=1,
                    budget_s=budget, min_rounds=7)
    loop_s, batched_s, last_s = s.values()
    for x in s.values():
        say(x.line())
    checks = [ratio_check("patching", "speed-up, full logits (loop / batched)", loop_s, batched_s, ">=", 10),
              ratio_check("patching", "speed-up, logit_positions=-1", loop_s, last_s, ">=", 10)]
    if source.startswith("FALLBACK"):
        for c in checks:
            c.label += " [random model]"
    for c in checks:
        say(c.line())
    return checks
