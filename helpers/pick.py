"""``pick_model``: the model a notebook's set-up cell loads, the real one or its embedded stand-in."""

from __future__ import annotations

from helpers.loading import choose_model
from helpers.model import HookedTransformer


def pick_model(real_name: str, **kwargs) -> HookedTransformer:
    """``HookedTransformer.from_pretrained(choose_model(real_name), **kwargs)``: the real model when its weights
    can be had, else its embedded stand-in (``loading.choose_model`` prints which, and why)."""
    return HookedTransformer.from_pretrained(choose_model(real_name), **kwargs)
