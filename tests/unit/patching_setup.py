"""The tiny model, the clean / corrupted token pair and the metric shared by the patching tests
(activation, attribution and path patching)."""

import torch
from conftest import randomise_

from helpers import HookedTransformer, HookedTransformerConfig
from helpers.patching import PATCH_KINDS

TINY = dict(n_layers=3, d_model=16, n_heads=4, d_mlp=32, d_vocab=30, n_ctx=8, seed=0)
BATCH, POS = 2, 5
# Every patching kind, with and without use_attn_result (the "result" kinds need it).
CASES = [(kind, attn_result) for kind in PATCH_KINDS for attn_result in (False, True)
         if attn_result or not kind.startswith("result")]


def make_model(**overrides) -> HookedTransformer:
    model = HookedTransformer(HookedTransformerConfig(**{**TINY, **overrides}))
    randomise_(model)
    return model.eval()


def token_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Clean and corrupted tokens [BATCH POS] that differ at two positions, like an IOI pair."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, TINY["d_vocab"], (BATCH, POS), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + 7) % TINY["d_vocab"]
    corrupted[:, 3] = (clean[:, 3] + 3) % TINY["d_vocab"]
    return clean, corrupted


def metric(logits: torch.Tensor) -> torch.Tensor:
    """Non-linear (a log-softmax), and depends on several positions and on every prompt of the batch, so that
    misplaced patches show."""
    assert logits.shape == (BATCH, POS, TINY["d_vocab"])
    last = (logits[:, -1, 1] - logits[:, -1, 2]).mean()
    return last + 0.5 * logits[:, 2].log_softmax(-1)[:, 0].sum()
