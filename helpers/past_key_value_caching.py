"""The key/value cache: the keys and values of the positions already computed, kept so that later positions
need not recompute them (the classic module and class names; TransformerLens 3 calls them
``TransformerLensKeyValueCache`` and ``TransformerLensKeyValueCacheEntry``, also defined here).

In a causal model a position reads the keys and values of the positions before it and nothing else of them. So
``model(tokens[:, :n], past_kv_cache=cache)`` followed by ``model(tokens[:, n:], past_kv_cache=cache)`` gives
the logits of ``model(tokens)`` for the last positions, computing each position once: the second call runs the
new positions only, with the positional embeddings of positions n, n+1, ... (``pos_offset``), and each attention
layer puts the cached keys and values before the new ones. ``generate`` does this one token at a time.

Hooks see the new positions only: ``hook_k`` and ``hook_v`` the new keys and values (the cache keeps what the hooks
return), ``hook_attn_scores`` and ``hook_pattern`` [batch head new_pos all_pos].

A frozen cache gives its keys and values without adding the new ones: several continuations of one prefix can be
run from it, as ``helpers.patching`` does with the corrupted run's prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from helpers.config import HookedTransformerConfig


@dataclass
class HookedTransformerKeyValueCacheEntry:
    """The keys and values of one attention layer, [batch pos_so_far n_heads d_head] each (key/value heads with
    grouped-query attention), and whether ``append`` stores the new ones (``frozen`` False) or only returns them."""

    past_keys: Float[torch.Tensor, "batch pos_so_far n_heads d_head"]
    past_values: Float[torch.Tensor, "batch pos_so_far n_heads d_head"]
    frozen: bool = False

    @classmethod
    def init_cache_entry(cls, cfg: HookedTransformerConfig, device=None,
                         batch_size: int = 1) -> HookedTransformerKeyValueCacheEntry:
        n_heads = cfg.n_key_value_heads if cfg.n_key_value_heads is not None else cfg.n_heads
        empty = torch.empty((batch_size, 0, n_heads, cfg.d_head), device=device or cfg.device, dtype=cfg.dtype)
        return cls(empty, empty.clone())

    def append(self, new_keys: Float[torch.Tensor, "batch new_pos n_heads d_head"],
               new_values: Float[torch.Tensor, "batch new_pos n_heads d_head"]) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of every position so far, the cached ones first; stored unless frozen.

        The result has the new keys' device and dtype: a layer placed on another device (device_map) or run in
        another precision keeps its cache there."""
        if self.past_keys.shape[1] == 0:
            keys, values = new_keys, new_values
        else:
            keys = torch.cat([self.past_keys.to(new_keys.device, new_keys.dtype), new_keys], dim=1)
            values = torch.cat([self.past_values.to(new_values.device, new_values.dtype), new_values], dim=1)
        if not self.frozen:
            self.past_keys, self.past_values = keys, values
        return keys, values


@dataclass
class HookedTransformerKeyValueCache:
    """One ``HookedTransformerKeyValueCacheEntry`` per layer, and the attention mask of the cached positions
    (all ones: helpers pads batches on the right, where the causal mask is enough).

    ``HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, batch_size)`` makes an empty one;
    pass it as ``past_kv_cache=`` to the model's forward (or run_with_cache, run_with_hooks).
    """

    entries: list[HookedTransformerKeyValueCacheEntry]
    previous_attention_mask: Int[torch.Tensor, "batch pos_so_far"]
    frozen: bool = False

    @classmethod
    def init_cache(cls, cfg: HookedTransformerConfig, device=None,
                   batch_size: int = 1) -> HookedTransformerKeyValueCache:
        entries = [HookedTransformerKeyValueCacheEntry.init_cache_entry(cfg, device, batch_size)
                   for _ in range(cfg.n_layers)]
        return cls(entries, torch.empty((batch_size, 0), dtype=torch.int, device=device or cfg.device))

    @property
    def pos_offset(self) -> int:
        """How many positions are cached: the position of the next token."""
        return max(entry.past_keys.shape[1] for entry in self.entries)

    def freeze(self) -> None:
        self.frozen = True
        for entry in self.entries:
            entry.frozen = True

    def unfreeze(self) -> None:
        self.frozen = False
        for entry in self.entries:
            entry.frozen = False

    def append_attention_mask(self, attention_mask: Int[torch.Tensor, "batch new_pos"]) -> torch.Tensor:
        """The mask of every position so far (stored unless frozen)."""
        attention_mask = attention_mask.to(self.previous_attention_mask.device)
        updated = torch.cat([self.previous_attention_mask, attention_mask.to(self.previous_attention_mask.dtype)],
                            dim=-1)
        if not self.frozen:
            self.previous_attention_mask = updated
        return updated

    def __getitem__(self, layer: int) -> HookedTransformerKeyValueCacheEntry:
        return self.entries[layer]

    def __len__(self) -> int:
        return len(self.entries)


# TransformerLens 3's names for the same classes.
TransformerLensKeyValueCache = HookedTransformerKeyValueCache
TransformerLensKeyValueCacheEntry = HookedTransformerKeyValueCacheEntry
