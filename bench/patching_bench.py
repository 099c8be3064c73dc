"""Items ``patching`` (batched activation patching vs the seed-style loop, one pass per patch) and
``attribution`` (attribution patching vs both)."""

from __future__ import annotations

import contextlib
import io
from functools import partial

from bench.core import Check, header, interleaved, ratio_check, say
from bench.tl_reference import SKIP_REASON, TLWorker, interleaved_with_tl, tl_python

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
    return checks + against_transformer_lens(quick)


def gpt2_small_shaped():
    """A random HookedTransformer of GPT-2 small's shapes (12 layers, d_model 768, 12 heads, vocab 50257)."""
    from helpers.model import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_ctx=1024, n_heads=12, d_mlp=3072, d_vocab=50257,
                                  act_fn="gelu_new", normalization_type="LN", seed=0, device="cpu")
    return HookedTransformer(cfg).eval()


def against_transformer_lens(quick: bool) -> list[Check]:
    """Batched activation patching vs TransformerLens 3.5.1's patching functions, same weights and tokens."""
    import torch

    from helpers.patching import activation_patching

    header("1b. activation patching on GPT-2-small shapes: helpers vs TransformerLens 3.5.1")
    labels = ("speed-up vs TransformerLens, resid_pre map", "speed-up vs TransformerLens, per-head map",
              "speed-up vs TransformerLens, per-head map, helpers unembedding the last position only")
    python = tl_python()
    if python is None:
        return [Check("patching", label, None, "x", ">=", 5, skipped=SKIP_REASON) for label in labels]
    torch.set_grad_enabled(False)
    model = gpt2_small_shaped()
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50257, (8, 15), generator=generator)  # 8 IOI-sized prompts of 15 tokens
    corrupted = clean.clone()
    corrupted[:, 3] = torch.randint(0, 50257, (8,), generator=generator)  # one token differs, as in IOI
    answer, wrong = 1000, 2000

    def metric(logits):  # [batch pos d_vocab] -> logit difference at the last position
        return (logits[:, -1, answer] - logits[:, -1, wrong]).mean()

    _, clean_cache = model.run_with_cache(clean)
    worker = TLWorker(python)
    try:
        worker.setup(model, clean, corrupted, answer, wrong)
        say(f"TransformerLens {worker.version} in {python}; random GPT-2-small-shaped weights (unprocessed), "
            "8 prompts x 15 tokens, metric at the last position; TransformerLens unembeds every position, and so "
            "does helpers but in the last row (logit_positions=-1, as notebooks 03 and 07 call it)")
        ours = {"helpers resid_pre": lambda: activation_patching(model, corrupted, clean_cache, metric,
                                                                 kind="resid_pre").values,
                "helpers per head (z)": lambda: activation_patching(model, corrupted, clean_cache, metric,
                                                                    kind="z").values,
                "helpers per head (z), last position": lambda: activation_patching(
                    model, corrupted, clean_cache, metric, kind="z", logit_positions=-1).values}
        for (name, fn), what in zip(ours.items(), ("resid_pre", "head_out_all_pos", "head_out_all_pos"),
                                    strict=True):
            gap = (fn() - worker.run(what)[1]).abs().max().item()
            say(f"same map as TransformerLens ({name}): max |difference| {gap:.2e} "
                + ("ok" if gap < 1e-3 else "<- DIFFERENT"))
        rounds, budget = (1, 0.0) if quick else (7, 240.0)
        s = interleaved_with_tl(ours, worker, {"TransformerLens get_act_patch_resid_pre": "resid_pre",
                                               "TransformerLens get_act_patch_attn_head_out_all_pos":
                                                   "head_out_all_pos"},
                                rounds=rounds, budget_s=budget, min_rounds=1 if quick else 3)
    finally:
        worker.close()
    for x in s.values():
        say(x.line(width=52))
    ours_resid, ours_heads, ours_heads_last, tl_resid, tl_heads = s.values()
    checks = [ratio_check("patching", labels[0], tl_resid, ours_resid, ">=", 5),
              ratio_check("patching", labels[1], tl_heads, ours_heads, ">=", 5),
              ratio_check("patching", labels[2], tl_heads, ours_heads_last, ">=", 5)]
    for c in checks:
        say(c.line())
    return checks


def run_attribution(quick: bool) -> list[Check]:
    """Item ``attribution``: attribution patching vs batched activation patching vs the one-pass-per-patch loop."""
    import torch

    from helpers import utils
    from helpers.patching import activation_patching, attribution_patching

    header("2. attribution patching vs batched activation patching vs one pass per patch (resid_pre map)")
    torch.set_grad_enabled(False)
    course, source = load_course_gpt2()
    clean_tokens, corrupted_tokens = course.to_tokens(CLEAN), course.to_tokens(CORRUPTED)
    john, mary = course.to_single_token(" John"), course.to_single_token(" Mary")

    def metric(logits):  # [batch pos d_vocab]
        return (logits[:, -1, john] - logits[:, -1, mary]).mean()

    checks = []
    for model, name in ((course, source), (gpt2_small_shaped(), "random weights of GPT-2 small's shapes")):
        _, clean_cache = model.run_with_cache(clean_tokens)
        n_layers, n_pos = model.cfg.n_layers, clean_tokens.shape[1]
        say(f"model: {name}; {n_layers} layers x {n_pos} positions = {n_layers * n_pos} patches")

        def loop(model=model, clean_cache=clean_cache, n_layers=n_layers, n_pos=n_pos):
            out = torch.zeros(n_layers, n_pos)
            for layer in range(n_layers):
                hook_name = utils.get_act_name("resid_pre", layer)
                for position in range(n_pos):
                    hook = partial(patch_resid_at, position=position, clean_cache=clean_cache)
                    out[layer, position] = metric(model.run_with_hooks(corrupted_tokens, fwd_hooks=[(hook_name, hook)]))
            return out

        def batched(model=model, clean_cache=clean_cache):
            return activation_patching(model, corrupted_tokens, clean_cache, metric, logit_positions=-1).values

        def attribution(model=model, clean_cache=clean_cache):
            return attribution_patching(model, corrupted_tokens, clean_cache, metric).values

        exact, approx = batched(), attribution()
        corr = torch.corrcoef(torch.stack([exact.flatten(), approx.flatten()]))[0, 1].item()
        say(f"correlation of the attribution map with the exact one: {corr:.3f} "
            f"(max |difference| {(exact - approx).abs().max().item():.3g})")
        rounds, budget = (3, None) if quick else (9, 90.0)
        s = interleaved({"loop (1 pass per patch)": loop, "activation_patching, logits at -1": batched,
                         "attribution_patching": attribution}, rounds=rounds, warmup=1, budget_s=budget,
                        min_rounds=3)
        loop_s, batched_s, attr_s = s.values()
        for x in s.values():
            say(x.line())
        tag = " [course-gpt2]" if name == source else " [GPT-2 small shapes]"
        if source.startswith("FALLBACK") and name == source:
            tag = " [random course-gpt2]"
        new = [ratio_check("attribution", "loop / attribution" + tag, loop_s, attr_s),
               ratio_check("attribution", "batched / attribution" + tag, batched_s, attr_s),
               ratio_check("attribution", "loop / batched" + tag, loop_s, batched_s)]
        for c in new:
            say(c.line())
        checks += new
    return checks
