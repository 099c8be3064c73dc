"""ActivationCache: the activations of one forward pass, by hook name, with analysis methods.

``cache["pattern", 0]`` is ``cache["blocks.0.attn.hook_pattern"]``; ``cache["resid_post", -1]`` is the
last layer's. The methods split the residual stream into parts (per layer, per component, per head,
per neuron) and project them onto logit directions: the logit lens and direct logit attribution.
"""

from __future__ import annotations

from collections.abc import Iterator

import einops
import torch
from jaxtyping import Float

from helpers import checks, utils

# A stack of parts of the residual stream, e.g. one per layer or per head.
Stack = Float[torch.Tensor, "num_components *batch_and_pos d_model"]

# Hook points that run only when a config flag is on: {end of the hook name: flag}.
FLAG_HOOKS = {"attn.hook_result": "use_attn_result", "hook_q_input": "use_split_qkv_input",
              "hook_k_input": "use_split_qkv_input", "hook_v_input": "use_split_qkv_input",
              "hook_attn_in": "use_attn_in", "hook_mlp_in": "use_hook_mlp_in"}


def _together(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """The parts on the device of the first: a model spread over devices (device_map) caches each layer's
    activations where that layer runs."""
    return [p.to(parts[0].device) for p in parts]


def _take(x: torch.Tensor, selection, dim: int = -2, what: str = "pos_slice") -> torch.Tensor:
    """Apply a selection ``what`` along ``dim``, by default the position one: a ``utils.Slice``, or what it takes
    (None, an int, which removes the dimension, a tuple ``(start, stop[, step])`` or a slice, a list / tensor of
    indices)."""
    if not isinstance(selection, utils.Slice):
        checks.positions(selection, x.shape[dim], what)
        selection = utils.Slice(selection)
    return selection.apply(x, dim)


class ActivationCache:
    """A dict of activations {hook name: tensor} bound to the model that produced them."""

    def __init__(self, cache_dict: dict[str, torch.Tensor], model, has_batch_dim: bool = True):
        self.cache_dict = cache_dict
        self.model = model
        self.has_batch_dim = has_batch_dim

    # ----- dictionary access ------------------------------------------------------------------

    def _name(self, key) -> str:
        if isinstance(key, str):
            if key in self.cache_dict:
                return key
            try:
                return utils.get_act_name(key)  # a short name: cache["embed"], cache["k6"], cache["scale"]
            except ValueError:
                return key  # reported as missing by __getitem__
        if isinstance(key, tuple) and len(key) in (2, 3):
            name, layer, *rest = key
            n = self.model.cfg.n_layers
            layer = layer + n if isinstance(layer, int) and -n <= layer < 0 else layer  # else reported missing
            return utils.get_act_name(name, layer, rest[0] if rest else None)
        raise TypeError(f"Index the cache by a hook name or (name, layer[, layer_type]), not {key!r}.")

    def __getitem__(self, key) -> torch.Tensor:
        name = self._name(key)
        if name not in self.cache_dict:
            raise self._miss(key, name)
        return self.cache_dict[name]

    def _miss(self, key, name: str) -> KeyError:
        """The error for a key not in the cache: a short name without its layer, a hook that a config flag
        switches on, or else the closest cached names (checks.cache_miss)."""
        cfg = self.model.cfg
        if isinstance(key, str) and key == name and key in utils.ACT_ALIASES:  # get_act_name wants a layer
            return KeyError(f"cache[{key!r}]: {key!r} is computed in every block, so give its layer: "
                            f"cache[{key!r}, 0] (layers 0 to {cfg.n_layers - 1}, or -1 for the last).")
        flag = next((f for end, f in FLAG_HOOKS.items() if name.endswith(end)), None)
        if flag is not None and not getattr(cfg, flag):
            return KeyError(f"cache[{key!r}]: {name} runs only when the config has {flag}=True, and this model "
                            f"has {flag}=False. Set model.cfg.{flag} = True (or load the model with "
                            f"from_pretrained(..., {flag}=True)) and run run_with_cache again (with a names_filter "
                            "that includes it, if you give one).")
        return checks.cache_miss(key, name, list(self.cache_dict), cfg.n_layers)

    def __contains__(self, key) -> bool:
        return self._name(key) in self.cache_dict

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def keys(self):
        return self.cache_dict.keys()

    def values(self):
        return self.cache_dict.values()

    def items(self):
        return self.cache_dict.items()

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    def to(self, device) -> ActivationCache:
        """Move every activation to ``device`` (a clear error if this machine has no such device)."""
        checks.device(device)
        self.cache_dict = {k: v.to(device) for k, v in self.cache_dict.items()}
        return self

    def remove_batch_dim(self) -> ActivationCache:
        """Drop the batch dimension of a batch of one."""
        if not self.has_batch_dim:
            return self
        for name, value in self.cache_dict.items():
            if value.shape[0] != 1:
                raise ValueError(f"remove_batch_dim needs a batch of 1, but {name} has batch size "
                                 f"{value.shape[0]}.")
        self.cache_dict = {k: v[0] for k, v in self.cache_dict.items()}
        self.has_batch_dim = False
        return self

    # ----- residual stream decompositions -----------------------------------------------------

    def _layer_count(self, layer: int | None) -> int:
        n = self.model.cfg.n_layers
        if layer is not None:
            checks.integer(layer, -(n + 1), n, "layer", f"the model has {n} layers, so layer goes from 0 to {n} "
                           f"(n_layers: the final residual stream), or -{n + 1} to -1 from the end")
        return n if layer is None else layer % (n + 1) if layer < 0 else layer

    def accumulated_resid(self, layer: int | None = None, incl_mid: bool = False, apply_ln: bool = False,
                          pos_slice=None, mlp_input: bool = False,
                          return_labels: bool = False) -> Stack | tuple[Stack, list[str]]:
        """The residual stream entering each layer up to ``layer`` (None: all, then the final one), for the
        logit lens. ``incl_mid`` adds each resid_mid before ``layer``; ``mlp_input`` the one of ``layer``."""
        layer = self._layer_count(layer)
        parts, labels = [], []
        for i in range(layer + 1):
            if i == self.model.cfg.n_layers:
                parts.append(self["resid_post", i - 1])
                labels.append("final_post")
                break
            parts.append(self["resid_pre", i])
            labels.append(f"{i}_pre")
            if (incl_mid and i < layer) or (mlp_input and i == layer):
                if not (self.model.cfg.attn_only or self.model.cfg.parallel_attn_mlp):  # parallel: no resid_mid
                    parts.append(self["resid_mid", i])
                    labels.append(f"{i}_mid")
        return self._finish_stack(_take(torch.stack(_together(parts)), pos_slice), labels, layer, pos_slice=pos_slice,
                                  incl_remainder=False, apply_ln=apply_ln, return_labels=return_labels,
                                  mlp_input=mlp_input)

    def decompose_resid(self, layer: int | None = None, mlp_input: bool = False, mode: str = "all",
                        apply_ln: bool = False, pos_slice=None, incl_embeds: bool = True,
                        return_labels: bool = False) -> Stack | tuple[Stack, list[str]]:
        """The residual stream before ``layer`` as a sum of the outputs of each earlier component
        (embeddings, then attn_out and mlp_out of each layer; ``mode`` "attn" or "mlp" keeps one kind)."""
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f"mode must be 'all', 'attn' or 'mlp', got {mode!r}.")
        layer = self._layer_count(layer)
        cfg = self.model.cfg
        parts, labels = [], []
        if incl_embeds:
            parts.append(self["hook_embed"])
            labels.append("embed")
            if cfg.positional_embedding_type != "rotary":  # rotary positions are in attention, not added
                parts.append(self["hook_pos_embed"])
                labels.append("pos_embed")
        for i in range(layer):
            if mode in ("all", "attn"):
                parts.append(self["attn_out", i])
                labels.append(f"{i}_attn_out")
            if mode in ("all", "mlp") and not cfg.attn_only:
                parts.append(self["mlp_out", i])
                labels.append(f"{i}_mlp_out")
        if mlp_input and layer < cfg.n_layers and mode in ("all", "attn") and not cfg.parallel_attn_mlp:
            parts.append(self["attn_out", layer])
            labels.append(f"{layer}_attn_out")
        return self._finish_stack(_take(torch.stack(_together(parts)), pos_slice), labels, layer, pos_slice=pos_slice,
                                  incl_remainder=False, apply_ln=apply_ln, return_labels=return_labels,
                                  mlp_input=mlp_input)

    def _empty_stack(self, pos_slice) -> torch.Tensor:
        """A stack of no components, [0 *batch_and_pos d_model], for layer 0."""
        resid = _take(self["resid_pre", 0], pos_slice)
        return resid.new_zeros((0, *resid.shape))

    def _head_results(self, layer: int) -> Float[torch.Tensor, "*batch pos head d_model"]:
        """Each head's output at ``layer``: the cached hook_result, or z @ W_O when it was not cached."""
        if ("result", layer) in self:
            return self["result", layer]
        return einops.einsum(self["z", layer], self.model.blocks[layer].attn.W_O,
                             "... head d_head, head d_head d_model -> ... head d_model")

    def stack_head_results(self, layer: int | None = None, return_labels: bool = False,
                           incl_remainder: bool = False, pos_slice=None,
                           apply_ln: bool = False) -> Stack | tuple[Stack, list[str]]:
        """Every head's output (z @ W_O, without b_O) for the layers before ``layer``, stacked:
        [n_heads_total *batch_and_pos d_model]."""
        layer = self._layer_count(layer)
        parts = [_take(einops.rearrange(self._head_results(i), "... head d -> head ... d"), pos_slice)
                 for i in range(layer)]
        labels = [f"L{i}H{h}" for i in range(layer) for h in range(self.model.cfg.n_heads)]
        stack = torch.cat(_together(parts)) if parts else self._empty_stack(pos_slice)
        return self._finish_stack(stack, labels, layer, pos_slice=pos_slice, incl_remainder=incl_remainder,
                                  apply_ln=apply_ln, return_labels=return_labels)

    def _finish_stack(self, stack: torch.Tensor, labels: list[str], layer: int, *, pos_slice, incl_remainder: bool,
                      apply_ln: bool, return_labels: bool, mlp_input: bool = False):
        """Optionally append the remainder (what the stack misses of the residual stream entering ``layer``:
        biases, embeddings...) and apply the LayerNorm scale; return the stack (and its labels)."""
        if incl_remainder:
            resid = _take(self["resid_post", layer - 1] if layer > 0 else self["resid_pre", 0], pos_slice)
            stack = torch.cat([stack, (resid.to(stack.device) - stack.sum(0))[None]])
            labels = [*labels, "remainder"]
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, mlp_input=mlp_input)
        return (stack, labels) if return_labels else stack

    def stack_neuron_results(self, layer: int | None = None, pos_slice=None, neuron_slice=None,
                             return_labels: bool = False, incl_remainder: bool = False,
                             apply_ln: bool = False) -> Stack | tuple[Stack, list[str]]:
        """Every MLP neuron's output (activation x row of W_out) for the layers before ``layer``:
        [n_neurons_total *batch_and_pos d_model]. ``neuron_slice`` picks neurons within each layer."""
        if self.model.cfg.attn_only:
            raise ValueError("An attention-only model has no neurons.")
        layer = self._layer_count(layer)
        parts, labels = [], []
        for i in range(layer):
            post = _take(self["post", i], pos_slice)
            W_out = self.model.blocks[i].mlp.W_out
            neurons = _take(torch.arange(W_out.shape[0]), neuron_slice, dim=0, what="neuron_slice").reshape(-1)
            parts.append(einops.einsum(post[..., neurons], W_out[neurons], "... n, n d -> n ... d"))
            labels += [f"L{i}N{n}" for n in neurons.tolist()]
        stack = torch.cat(_together(parts)) if parts else self._empty_stack(pos_slice)
        return self._finish_stack(stack, labels, layer, pos_slice=pos_slice, incl_remainder=incl_remainder,
                                  apply_ln=apply_ln, return_labels=return_labels)

    # ----- projecting onto the logits ---------------------------------------------------------

    def apply_ln_to_stack(self, residual_stack: Stack, layer: int | None = None, mlp_input: bool = False,
                          pos_slice=None, batch_slice=None, has_batch_dim: bool = True) -> Stack:
        """Centre each component and divide it by the scale the LayerNorm before ``layer`` applied to the
        full residual stream, so the components still add up to what that LayerNorm outputs (before its
        weight and bias, which fold_ln moves into the next weights). ``layer`` None, -1 or n_layers means
        ln_final; ``mlp_input`` means ln2. ``pos_slice`` is the one already applied to the stack;
        ``batch_slice`` is applied here, to the stack's dim 1 if ``has_batch_dim``."""
        cfg = self.model.cfg
        if has_batch_dim:
            residual_stack = _take(residual_stack, batch_slice, dim=1, what="batch_slice")
        if cfg.normalization_type is None:
            return residual_stack
        layer = self._layer_count(layer)
        if cfg.normalization_type in ("LN", "LNPre"):  # an RMSNorm does not centre
            residual_stack = residual_stack - residual_stack.mean(dim=-1, keepdim=True)
        if layer == cfg.n_layers:
            scale = self["ln_final.hook_scale"]
        else:
            scale = self[f"blocks.{layer}.{'ln2' if mlp_input else 'ln1'}.hook_scale"]
        scale = _take(scale, pos_slice)
        if self.has_batch_dim:
            scale = _take(scale, batch_slice, dim=0, what="batch_slice")
        return residual_stack / scale.to(residual_stack.device)

    def logit_attrs(self, residual_stack: Stack, tokens, incorrect_tokens=None, pos_slice=None,
                    batch_slice=None,
                    has_batch_dim: bool = True) -> Float[torch.Tensor, " num_components *batch_and_pos"]:
        """Each component's direct contribution to the logit of ``tokens`` (minus ``incorrect_tokens``'):
        the component, scaled by ln_final (``apply_ln_to_stack``; pass the stack unscaled), dotted with the
        tokens' unembedding directions. ``pos_slice`` is the one applied to the stack, see apply_ln_to_stack.
        With fold_ln, the attributions of a full decomposition add up to the logit (difference) minus b_U."""
        directions = self._directions(tokens)
        if incorrect_tokens is not None:
            directions = directions - self._directions(incorrect_tokens)
        scaled = self.apply_ln_to_stack(residual_stack, layer=None, pos_slice=pos_slice,
                                        batch_slice=batch_slice, has_batch_dim=has_batch_dim)
        return (scaled * directions.to(scaled.device)).sum(-1)

    def _directions(self, tokens) -> torch.Tensor:
        if isinstance(tokens, str | int):
            return self.model.tokens_to_residual_directions(tokens)
        return self.model.tokens_to_residual_directions(torch.as_tensor(tokens))
