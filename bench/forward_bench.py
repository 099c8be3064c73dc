"""Item ``forward``: HookedTransformer vs transformers' GPT2LMHeadModel on identical weights."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings

from bench import core
from bench.core import Check, header, interleaved, ratio_check, say

BATCH, POS = 8, 128
TL_REFERENCE = ("reference, TransformerLens 3.5.1 measured on this machine (same setting): forward 1.15x HF "
                "(2.08 s vs 1.81 s), run_with_cache 1.17x HF")


def build_models():
    """A GPT-2-small-sized random GPT2LMHeadModel (sdpa and eager copies) and the HookedTransformer of its
    weights, unprocessed (same computation)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from helpers import HookedTransformer
    from helpers.weights import NO_PROCESSING

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
    hf = GPT2LMHeadModel(config).eval()
    hf_eager = copy.deepcopy(hf)
    hf_eager.set_attn_implementation("eager")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # not its "Loaded ..." line
        warnings.simplefilter("ignore")
        ht = HookedTransformer.from_pretrained("gpt2", hf_model=hf, **NO_PROCESSING, device=core.DEVICE).eval()
    return hf.to(core.DEVICE), hf_eager.to(core.DEVICE), ht


def run(quick: bool) -> list[Check]:
    import torch

    header(f"2. forward pass: HookedTransformer vs transformers GPT2LMHeadModel ({BATCH} x {POS} tokens)")
    torch.set_grad_enabled(False)
    hf, hf_eager, ht = build_models()
    tokens = torch.randint(0, 50257, (BATCH, POS), generator=torch.Generator().manual_seed(0)).to(core.DEVICE)
    say(f"random GPT-2-small-sized model (12 layers, d_model 768, 12 heads, vocab 50257, n_ctx 1024), "
        f"{sum(p.numel() for p in hf.parameters()) / 1e6:.0f} M parameters; {core.DEVICE}, torch.no_grad, "
        "HF called with use_cache=False")
    say(f"HF attention implementation: {hf.config._attn_implementation!r} (default); "
        f"context copy: {hf_eager.config._attn_implementation!r}")

    def hf_forward():
        return hf(tokens, use_cache=False).logits

    def hf_eager_forward():
        return hf_eager(tokens, use_cache=False).logits

    def ht_forward():
        return ht(tokens)

    def ht_cache():
        _, cache = ht.run_with_cache(tokens)
        return len(cache)

    def ht_hooked():  # one temporary no-op hook: the bookkeeping of a hooked call (thread, cleanup) on a forward
        return ht.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_mid", lambda x, hook: None)])

    reference = hf_forward()
    scale = reference.abs().max().item()
    ok = True
    for name, logits in (("HookedTransformer", ht_forward()), ("HF eager", hf_eager_forward())):
        gap = (logits - reference).abs().max().item()
        ok &= gap < 1e-4 * max(1.0, scale)
        say(f"logits of {name} vs HF {hf.config._attn_implementation}: max |difference| {gap:.2e} "
            f"(max |logit| {scale:.2f}) " + ("ok" if gap < 1e-4 * max(1.0, scale) else "<- DIFFERENT"))
    _, cache = ht.run_with_cache(tokens)
    say(f"run_with_cache stores {len(cache)} activations ({len(ht.hook_dict)} hook points)")
    del cache, reference

    rounds, budget = (2, None) if quick else (7, 55.0)
    s = interleaved({f"HF GPT2LMHeadModel ({hf.config._attn_implementation})": hf_forward,
                     "HookedTransformer forward": ht_forward,
                     "HookedTransformer run_with_cache": ht_cache,
                     "HF GPT2LMHeadModel (eager)": hf_eager_forward,
                     "HookedTransformer run_with_hooks (one no-op hook)": ht_hooked}, rounds=rounds, warmup=1,
                    budget_s=budget, min_rounds=5)
    hf_s, fwd_s, cache_s, eager_s, hooked_s = s.values()
    for x in s.values():
        say(x.line())
    say(TL_REFERENCE)
    checks = [ratio_check("forward", "HT forward / HF", fwd_s, hf_s, "<=", 1.02),
              ratio_check("forward", "HT run_with_cache / HF", cache_s, hf_s, "<=", 1.10),
              ratio_check("forward", "HT run_with_hooks (one no-op hook) / HT forward", hooked_s, fwd_s, "<=", 1.02),
              ratio_check("forward", "HT forward / HF eager (context)", fwd_s, eager_s),
              ratio_check("forward", "HF eager / HF sdpa (context)", eager_s, hf_s)]
    if not ok:
        checks.insert(0, Check("forward", "logits agree with HF", None, "x",
                               error="the HookedTransformer does not compute the HF model's logits"))
    for c in checks:
        say(c.line())
    return checks


# ------------------------------------------------------------------------------------------------
# The families beyond GPT-2: Qwen 2.5 0.5B's and Pythia 160m's shapes, random weights
# ------------------------------------------------------------------------------------------------

#: name -> (transformers config class, its fields, batch, positions)
FAMILY_SHAPES = {
    "Qwen2.5-0.5B": ("Qwen2Config", dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                                         num_key_value_heads=2, intermediate_size=4864, vocab_size=151936,
                                         max_position_embeddings=32768, tie_word_embeddings=True,
                                         rope_parameters=dict(rope_type="default", rope_theta=1000000.0)), 2, 128),
    "Pythia-160m": ("GPTNeoXConfig", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                          intermediate_size=3072, vocab_size=50304, max_position_embeddings=2048,
                                          rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                                               partial_rotary_factor=0.25)), 8, 128),
}


def build_family(name: str):
    """A random transformers model of ``name``'s shape (sdpa attention, its default) and the HookedTransformer of
    its weights, unprocessed (same computation)."""
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from helpers import HookedTransformer
    from helpers.weights import NO_PROCESSING

    hf_logging.set_verbosity_error()
    config_class, fields, _, _ = FAMILY_SHAPES[name]
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(getattr(transformers, config_class)(**fields)).eval()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ht = HookedTransformer.from_pretrained(name, hf_model=hf, **NO_PROCESSING, device="cpu").eval()
    return hf, ht


def run_families(quick: bool) -> list[Check]:
    import torch

    torch.set_grad_enabled(False)
    checks = []
    for name, (_, fields, batch, pos) in FAMILY_SHAPES.items():
        header(f"forward pass, {name}'s shape: HookedTransformer vs transformers ({batch} x {pos} tokens)")
        hf, ht = build_family(name)
        tokens = torch.randint(0, fields["vocab_size"], (batch, pos), generator=torch.Generator().manual_seed(0))
        say(f"random {type(hf).__name__}, {sum(p.numel() for p in hf.parameters()) / 1e6:.0f} M parameters; CPU, "
            f"torch.no_grad, HF attention {hf.config._attn_implementation!r}, use_cache=False")

        def hf_forward(hf=hf, tokens=tokens):
            return hf(tokens, use_cache=False).logits

        def ht_forward(ht=ht, tokens=tokens):
            return ht(tokens)

        def ht_hooked(ht=ht, tokens=tokens):  # a no-op hook on every layer's attention output: a hooked forward
            return ht.run_with_hooks(tokens, fwd_hooks=[(lambda n: n.endswith("hook_attn_out"), lambda x, hook: None)])

        reference = hf_forward()
        gap = (ht_forward() - reference).abs().max().item()
        say(f"logits of HookedTransformer vs HF: max |difference| {gap:.2e} (max |logit| "
            f"{reference.abs().max().item():.2f})")
        del reference
        rounds, budget = (2, None) if quick else (9, 180.0)  # noisy on a shared machine: more rounds
        s = interleaved({f"HF {type(hf).__name__}": hf_forward, "HookedTransformer forward": ht_forward,
                         "HookedTransformer run_with_hooks (no-op hooks)": ht_hooked},
                        rounds=rounds, warmup=1, budget_s=budget, min_rounds=5)
        hf_s, fwd_s, hooked_s = s.values()
        for x in s.values():
            say(x.line())
        for c in (ratio_check("families", f"{name}: HT forward / HF", fwd_s, hf_s, "<=", 1.05),
                  ratio_check("families", f"{name}: HT run_with_hooks (no-op hooks) / HF", hooked_s, hf_s, "<=", 1.05)):
            say(c.line())
            checks.append(c)
        if gap > 1e-3:
            checks.insert(0, Check("families", f"{name}: logits agree with HF", None, "x",
                                   error="the HookedTransformer does not compute the HF model's logits"))
        del hf, ht
    return checks
