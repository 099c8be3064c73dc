"""Speed measurements of ``helpers``: ``python -m bench`` (``make bench`` adds ``--notebooks``).

Each item times two (or more) ways of doing the same thing side by side in one run: the
repetitions are interleaved (A B, B A, A B ...) so that a change of machine load hits both sides
alike, and every side reports its min and median. An item prints its ratios (from the medians, the
ratio of the mins alongside), a goal, and PASS or MISS; a summary table ends the run.

Items (``--only NAME``, repeatable or comma-separated):

- ``patching``: batched ``activation_patching`` vs one ``run_with_hooks`` per (layer, position).
- ``attribution``: ``attribution_patching`` vs batched ``activation_patching`` vs the one-pass-per-patch loop,
  on course-gpt2 and on random weights of GPT-2 small's shapes (ratios only, no goal).
- ``forward``: HookedTransformer forward and ``run_with_cache`` vs transformers' GPT2LMHeadModel,
  same weights.
- ``generate``: ``generate`` with the key/value cache vs transformers' ``generate(do_sample=False)``, same weights.
- ``memory``: the peak memory of ``from_pretrained`` (float32, bfloat16, float16) in a fresh process, over the
  parameters' bytes, on a GPT-2-small-shaped ``save_pretrained`` directory; and the peak memory of a loss over
  GPT-2's vocabulary (100 x 94 tokens), ``return_type="loss"`` against the whole batch's logits at once.
- ``import``: ``import helpers`` vs ``import torch``, fresh processes; no transformers/plotly/circuitsvis.
- ``load``: ``from_pretrained`` of each embedded course model, in a fresh process and warm.
- ``notebooks``: the notebook series executed offline (only with ``--notebooks`` or ``--only notebooks``).

``--quick`` takes a few repetitions only (a smoke test: its numbers are rough); ``--threads N`` sets
torch's threads for the in-process items (and the TransformerLens worker); ``--clock cpu`` times by the process's
CPU time instead of the wall clock (with ``--threads 1``, a fairer measure on a machine busy with other work).
``python -m bench.profile forward|patching [--threads N]`` prints torch.profiler tables to investigate a MISS.
Measure on an idle machine: with other processes running, every parallel torch op waits for a scheduler slice,
which penalises code with many small ops.
"""
