"""Items ``generate`` (generation with the key/value cache vs transformers' generate) and ``memory`` (the peak
memory of from_pretrained, in a fresh process, against the parameters' bytes; and of a loss over GPT-2's
vocabulary)."""

from __future__ import annotations

import json
import tempfile

from bench import core
from bench.core import Check, header, interleaved, ratio_check, run_python, say

PROMPT, NEW = 16, 64

#: The start of each measuring program below: kib("VmRSS") or kib("VmHWM"), from /proc/self/status.
KIB = """
import re
def kib(field):
    return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
"""

#: A fresh process loads a save_pretrained directory; the peak resident memory (VmHWM, reset just before) above
#: what the process held before, over the parameters' bytes. ``{old}``: the loading of before issue 33 (a random
#: model, then the whole state dict converted, processed and copied in), for comparison.
PEAK_MEMORY = KIB + """
import json, time, torch
import accelerate, transformers
from transformers import GPT2Config  # what loading imports, imported before the measure
from helpers import HookedTransformer, loading, weights
from helpers.tokenizer import gpt2_tokenizer
gpt2_tokenizer()
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
before, start = kib("VmRSS"), time.perf_counter()
if {old}:
    cfg, sd, _ = loading.load_pretrained({path!r}, dtype=getattr(torch, {dtype!r}))
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(sd)
    del sd
else:
    model = HookedTransformer.from_pretrained({path!r}, dtype=getattr(torch, {dtype!r}))
seconds = time.perf_counter() - start
params = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps(dict(ratio=(kib("VmHWM") - before) * 1024 / params, params=params, seconds=seconds)))
"""


#: A fresh process computes the mean next-token loss of 100 sequences of 94 tokens (notebook 10's test stories) on a
#: random 2-layer model with GPT-2's vocabulary: ``{whole}`` from the whole batch's logits at once, as before
#: 08/12/2026, else return_type="loss" (a few sequences at a time). Peak resident memory above what the process held
#: before (VmHWM, reset just before), and the best of three times.
LOSS_MEMORY = KIB + """
import json, time, torch
from helpers import HookedTransformer, HookedTransformerConfig, utils
torch.set_grad_enabled(False)
model = HookedTransformer(HookedTransformerConfig(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=128,
                                                  d_vocab=50257, act_fn="gelu_new", normalization_type="LN", seed=0))
tokens = torch.randint(50257, (100, 94), generator=torch.Generator().manual_seed(0))
model(tokens[:2])
open("/proc/self/clear_refs", "w").write("5")
before, times = kib("VmRSS"), []
for _ in range(3):
    start = time.perf_counter()
    loss = utils.lm_cross_entropy_loss(model(tokens), tokens) if {whole} else model(tokens, return_type="loss")
    times.append(time.perf_counter() - start)
print(json.dumps(dict(peak=(kib("VmHWM") - before) * 1024, seconds=min(times), loss=loss.item())))
"""


def run_memory(quick: bool) -> list[Check]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    header("3. loading: peak memory of from_pretrained in a fresh process, over the parameters' bytes")
    checks = []
    with tempfile.TemporaryDirectory(prefix="bench-gpt2-") as directory:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257,
                                   n_positions=1024)).save_pretrained(directory)
        say("a save_pretrained directory of a random GPT-2 small (12 layers, d_model 768, float32 safetensors, "
            "498 MB); the loaded model has 163 M parameters (its unembedding apart from the embedding)")
        for dtype in ("float32", "bfloat16", "float16"):
            out = json.loads(run_python(PEAK_MEMORY.format(path=directory, dtype=dtype, old=False)))
            say(f"  dtype {dtype:<9} parameters {out['params'] / 1e6:6.0f} MB  peak {out['ratio']:.2f}x of them  "
                f"({out['seconds']:.1f} s)")
            checks.append(Check("memory", f"from_pretrained peak memory / parameters, {dtype}", out["ratio"], "x",
                                "<=", 1.3, detail=f"{out['seconds']:.1f} s"))
        if not quick:
            out = json.loads(run_python(PEAK_MEMORY.format(path=directory, dtype="float32", old=True)))
            say(f"  before issue 33 (a random model, then the whole state dict): peak {out['ratio']:.2f}x "
                f"({out['seconds']:.1f} s)")
            checks.append(Check("memory", "the loading of before issue 33, float32 (context)", out["ratio"], "x",
                                detail=f"{out['seconds']:.1f} s"))
    if not quick:
        checks += _family_memory()
    checks += _loss_memory()
    for c in checks:
        say(c.line())
    return checks


def _loss_memory() -> list[Check]:
    """The peak memory of a loss over GPT-2's vocabulary (100 x 94 tokens): return_type="loss" against the whole
    batch's logits at once."""
    out = {whole: json.loads(run_python(LOSS_MEMORY.format(whole=whole), env={"OMP_NUM_THREADS": "1"}))
           for whole in (True, False)}
    say(f"  loss of 100 x 94 tokens, GPT-2's vocabulary, one thread: whole batch's logits {out[True]['peak'] / 1e9:.2f}"
        f" GB ({out[True]['seconds']:.2f} s), return_type=\"loss\" {out[False]['peak'] / 1e9:.2f} GB "
        f"({out[False]['seconds']:.2f} s); losses {out[True]['loss']:.6f} and {out[False]['loss']:.6f}")
    time_ratio = out[False]["seconds"] / out[True]["seconds"]
    return [Check("memory", "loss over GPT-2's vocabulary: return_type=\"loss\" / whole batch's logits, peak memory",
                  out[False]["peak"] / out[True]["peak"], "x", detail=f"{time_ratio:.2f}x the time")]


#: Put before PEAK_MEMORY: the loading of a family beyond GPT-2 as a transformers model in memory still takes it (and
#: as its files were, until the afternoon of 07/12/2026): its whole classic state dict first, then piece by piece.
WHOLE_STATE_DICT = ("from helpers import loading\n_load = loading._load\n"
                    "loading._load = lambda *a: _load(*a[:5], False, a[6])\n")
#: Put before PEAK_MEMORY: besides, each weights file read whole first (as before the morning of 07/12/2026).
WHOLE_FILE = WHOLE_STATE_DICT + "from helpers import hub\nhub._open_tensors = hub._load_tensors\n"


def _family_memory() -> list[Check]:
    """The same peak on a family beyond GPT-2 at Qwen2.5-0.5B's shapes: its files read block by block, its whole state
    dict first, or besides each file read whole first."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    checks = []
    with tempfile.TemporaryDirectory(prefix="bench-qwen-") as directory:
        torch.manual_seed(0)
        config = Qwen2Config(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                             intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True)
        Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(directory)
        say("a save_pretrained directory of a random model of Qwen2.5-0.5B's shapes (24 layers, d_model 896, 151,936 "
            "embedding rows tied to the unembedding; bfloat16 safetensors as published, 988 MB)")
        for dtype, label, prefix in (("float32", "block by block", ""),
                                     ("float32", "the whole state dict first", WHOLE_STATE_DICT),
                                     ("float32", "the whole file, then the whole state dict", WHOLE_FILE),
                                     ("bfloat16", "block by block", ""),
                                     ("bfloat16", "the whole state dict first", WHOLE_STATE_DICT)):
            out = json.loads(run_python(prefix + PEAK_MEMORY.format(path=directory, dtype=dtype, old=False)))
            say(f"  {dtype:<9} {label:<42} parameters {out['params'] / 1e6:6.0f} MB  peak {out['ratio']:.2f}x of them"
                f"  ({out['seconds']:.1f} s)")
            checks.append(Check("memory", f"Qwen2.5-0.5B's shapes, {dtype}, {label} (context)", out["ratio"], "x",
                                detail=f"{out['seconds']:.1f} s"))
    return checks


def run_generate(quick: bool) -> list[Check]:
    import torch

    from bench.forward_bench import build_models

    header(f"4. generation: {NEW} tokens after a {PROMPT}-token prompt, greedy, with the key/value cache vs "
           "transformers' generate")
    torch.set_grad_enabled(False)
    hf, _, ht = build_models()
    prompt = torch.randint(0, 50257, (1, PROMPT), generator=torch.Generator().manual_seed(0)).to(core.DEVICE)
    say("random GPT-2-small-sized weights, the same in both; HF generate(do_sample=False) with its DynamicCache")

    def hf_generate():
        return hf.generate(prompt, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)

    def ht_generate():
        return ht.generate(prompt, max_new_tokens=NEW, do_sample=False, stop_at_eos=False, verbose=False)

    def ht_no_cache():
        return ht.generate(prompt, max_new_tokens=NEW, do_sample=False, stop_at_eos=False, verbose=False,
                           use_past_kv_cache=False)

    ours, theirs = ht_generate(), hf_generate()
    same = torch.equal(ours, theirs) and torch.equal(ours, ht_no_cache())
    say("same tokens as HF and as without the cache: " + ("ok" if same else "<- DIFFERENT"))
    rounds, budget = (2, None) if quick else (9, 120.0)
    sides = {"HF generate": hf_generate, "HookedTransformer.generate": ht_generate}
    if not quick:
        sides["HookedTransformer.generate, no cache"] = ht_no_cache
    s = interleaved(sides, rounds=rounds, warmup=1, budget_s=budget, min_rounds=5)
    for x in s.values():
        say(x.line(width=38))
    checks = [ratio_check("generate", "HT generate (cache) / HF generate", s["HookedTransformer.generate"],
                          s["HF generate"], "<=", 1.10)]
    if not quick:
        checks.append(ratio_check("generate", "HT generate without cache / with (context)",
                                  s["HookedTransformer.generate, no cache"], s["HookedTransformer.generate"]))
    if not same:
        checks.insert(0, Check("generate", "same tokens", None, "x", error="the generated tokens differ"))
    for c in checks:
        say(c.line())
    return checks
