"""The load-time processing steps of a state dict with classic names (its conversion from a published format is
in helpers.conversion).

Each step takes a state dict with classic names (``blocks.0.attn.W_Q`` ...) and returns
a new one that computes the same function (same log-probs); the tensors given are left as they are, unless the
caller says they are its own copies (``in_place=True``: the large matrices are then changed where they lie, with no
second copy of the unembedding in memory):

- fold_layer_norm: multiply each LayerNorm's weight into the matrices that read its output and its
  bias into their biases; the LayerNorms become ``LNPre`` (centre and scale only).
- center_writing_weights: remove the mean over d_model from everything that writes to the residual
  stream (every reader starts with a LayerNorm that removes it anyway).
- center_unembed: remove the mean over the vocabulary from W_U and b_U (softmax ignores it).
- fold_value_biases: move b_V into b_O (the attention pattern sums to 1 over source positions).
- refactor_factored_attn_matrices: re-split W_Q W_K^T and W_V W_O by SVD so each factor is balanced.

Per family (the validity of each step): RMSNorms fold like LayerNorms, without bias or centring, and become
``RMSPre``; nothing is centred around an RMSNorm (it does not remove the mean: centre_writing_weights would change the
function), nor the unembedding under a final logit soft-cap (cap * tanh(logits / cap) does not ignore a shift);
the norms after attention and MLP (ln1_post, ln2_post) and the query/key norms stay as they are (their output is
not read by one matrix); refactor_factored_attn_matrices is refused with rotary positions or query/key norms (W_Q
W_K^T is then not the scores' bilinear form). A step left off for these reasons is said in a warning when it was
asked for explicitly, and left off silently when it was only the default.

Grouped-query attention's shared key/value weights (``_W_K``, ``_b_V``...) and a gated MLP's ``W_gate`` go through
the same steps; a shortformer model skips fold_ln and the centring steps, as in the classic library (its positions
join the queries and keys after ln1, outside the residual stream).

Einsum letters are those of helpers.model (h head, d d_model, e d_head), with m d_mlp and v d_vocab.

``PROCESSING`` holds the five flags and their defaults, for every caller (from_pretrained,
process_weights_, ...); ``process_state_dict`` applies them in order.
"""

from __future__ import annotations

import einops
import torch

from helpers import checks
from helpers.config import HookedTransformerConfig

Weights = dict[str, torch.Tensor]

#: The load-time processing steps and their defaults (those of the classic from_pretrained).
PROCESSING = dict(fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True,
                  refactor_factored_attn_matrices=False)
NO_PROCESSING = dict.fromkeys(PROCESSING, False)


def split_processing(kwargs: dict) -> tuple[dict, dict]:
    """(the processing flags among ``kwargs``, the other keywords)."""
    processing = {k: v for k, v in kwargs.items() if k in PROCESSING}
    return processing, {k: v for k, v in kwargs.items() if k not in PROCESSING}


def valid_processing(cfg: HookedTransformerConfig, **flags: bool) -> dict[str, bool]:
    """Every processing flag: those given, the others at their ``PROCESSING`` default, with the steps that would
    change this model's function turned off (a warning for those asked)."""
    unknown = sorted(set(flags) - set(PROCESSING))
    if unknown:
        raise TypeError(f"Unknown weight-processing flags {unknown}; they are {sorted(PROCESSING)}.")
    asked = dict(flags)
    flags = {**PROCESSING, **flags}
    _family_limits(flags, asked, cfg)
    if cfg.positional_embedding_type == "shortformer":
        # Its positions join the queries and keys after ln1 and never enter the residual stream: folding ln1 would
        # scale them, and W_pos is no writer to centre. The classic library leaves these steps off.
        skipped = [f for f in ("fold_ln", "center_writing_weights", "center_unembed") if flags[f]]
        if skipped:
            checks.warn(f"A shortformer model's weights are not processed by {', '.join(skipped)}: left off.")
        flags.update(fold_ln=False, center_writing_weights=False, center_unembed=False)
    return flags


def process_state_dict(sd: Weights, cfg: HookedTransformerConfig, in_place: bool = False,
                       **flags: bool) -> tuple[Weights, str | None]:
    """The state dict after the processing steps ``flags`` asks for (others at their ``PROCESSING``
    default), and the normalization type the model then needs (``"LNPre"`` once LayerNorms are folded);
    ``in_place``: the tensors of ``sd`` are the caller's to overwrite."""
    flags = valid_processing(cfg, **flags)
    normalization = cfg.normalization_type
    if flags["fold_ln"] and normalization in ("LN", "RMS"):
        sd, normalization = fold_layer_norm(sd, cfg, in_place), normalization + "Pre"
    if flags["center_writing_weights"] and normalization in ("LN", "LNPre"):
        sd = center_writing_weights(sd, cfg, in_place)
    if flags["center_unembed"]:
        sd = center_unembed(sd, in_place)
    if flags["fold_value_biases"]:
        sd = fold_value_biases(sd, cfg)
    if flags["refactor_factored_attn_matrices"]:
        sd = refactor_factored_attn_matrices(sd, cfg)
    return sd, normalization


def _family_limits(flags: dict, asked: dict, cfg) -> None:
    """Turn off (in ``flags``) the steps that would change this model's function; a warning for those asked."""
    why = {}
    if cfg.normalization_type in ("RMS", "RMSPre"):
        why["center_writing_weights"] = "an RMSNorm does not remove the mean, so centring what writes to the " \
                                        "residual stream would change the model"
    if cfg.output_logits_soft_cap > 0:
        why["center_unembed"] = "the final logits are soft-capped (cap * tanh(logits / cap)), which a shift of " \
                                "the logits changes"
    for step, reason in why.items():
        if flags[step] and asked.get(step):
            checks.warn(f"{step} is left off for {cfg.model_name}: {reason}.")
        flags[step] = False
    if flags["refactor_factored_attn_matrices"] and (cfg.positional_embedding_type == "rotary" or cfg.use_qk_norm):
        raise ValueError("refactor_factored_attn_matrices re-splits W_Q W_K^T, but with rotary positions (or query/"
                         "key norms) the scores are not that bilinear form: leave it off for this model.")


def _blocks(cfg):
    return range(cfg.n_layers)


def _attn(cfg, layer: int, name: str) -> str:
    """The state dict key of an attention parameter: grouped-query attention stores W_K, W_V, b_K, b_V once per
    key/value head, as _W_K ... (helpers.model.GroupedQueryAttention)."""
    grouped = cfg.n_key_value_heads is not None and name[-1] in "KV"
    return f"blocks.{layer}.attn.{'_' if grouped else ''}{name}"


def fold_layer_norm(sd: Weights, cfg, in_place: bool = False) -> Weights:
    sd = dict(sd)

    def fold(ln: str, readers: list[tuple[str, str | None, str]]):
        """Fold ``ln.w``/``ln.b`` into each (W, b, einsum pattern of W's input dim) that reads it; b None: W has no
        bias (a gated MLP's W_gate), so the LayerNorm's bias must be zero."""
        if f"{ln}.w" not in sd:  # no norm there (OLMo 2 has no ln1 / ln2, only norms after attention and MLP)
            return
        w, b = sd.pop(f"{ln}.w"), sd.pop(f"{ln}.b", None)  # an RMSNorm has no bias
        for W_name, b_name, pattern in readers:
            W = sd[W_name]
            if b is not None and b_name is not None:
                sd[b_name] = sd[b_name] + einops.einsum(b, W, pattern)
            elif b is not None and b.any():
                raise ValueError(f"fold_ln cannot fold {ln}.b into {W_name}, which has no bias: load or process "
                                 "this model with fold_ln=False.")
            W = W.mul_(w[:, None]) if in_place else W * w[:, None]  # W's input dim is -2 (W_in [d m], W_Q [h d e])
            # The LayerNorm's output is centred, so the mean of W over its input dim does nothing (an RMSNorm's is not).
            sd[W_name] = _minus_mean(W, -2, in_place=True) if b is not None else W  # W is a copy, or in_place

    for layer in _blocks(cfg):
        p = f"blocks.{layer}"
        fold(f"{p}.ln1", [(_attn(cfg, layer, f"W_{x}"), _attn(cfg, layer, f"b_{x}"), "d, h d e -> h e")
                          for x in "QKV"])
        if not cfg.attn_only:
            fold(f"{p}.ln2", [(f"{p}.mlp.W_in", f"{p}.mlp.b_in", "d, d m -> m"),
                              *([(f"{p}.mlp.W_gate", None, "")] if cfg.gated_mlp else [])])
            if cfg.is_layer_norm_activation():
                fold(f"{p}.mlp.ln", [(f"{p}.mlp.W_out", f"{p}.mlp.b_out", "m, m d -> d")])
    fold("ln_final", [("unembed.W_U", "unembed.b_U", "d, d v -> v")])
    return sd


def _minus_mean(t: torch.Tensor, dim: int, in_place: bool) -> torch.Tensor:
    """``t`` minus its mean over ``dim``, written into ``t`` when ``in_place``."""
    mean = t.mean(dim=dim, keepdim=True)
    return t.sub_(mean) if in_place else t - mean


def center_writing_weights(sd: Weights, cfg, in_place: bool = False) -> Weights:
    sd = dict(sd)

    def center(name: str):
        sd[name] = _minus_mean(sd[name], -1, in_place)

    center("embed.W_E")
    if "pos_embed.W_pos" in sd:  # rotary models have no learned positions
        center("pos_embed.W_pos")
    for layer in _blocks(cfg):
        center(f"blocks.{layer}.attn.W_O")
        center(f"blocks.{layer}.attn.b_O")
        if not cfg.attn_only:
            center(f"blocks.{layer}.mlp.W_out")
            center(f"blocks.{layer}.mlp.b_out")
    return sd


def center_unembed(sd: Weights, in_place: bool = False) -> Weights:
    sd = dict(sd)
    sd["unembed.W_U"] = _minus_mean(sd["unembed.W_U"], -1, in_place)
    sd["unembed.b_U"] = _minus_mean(sd["unembed.b_U"], -1, in_place)
    return sd


def fold_value_biases(sd: Weights, cfg) -> Weights:
    sd = dict(sd)
    for layer in _blocks(cfg):
        p, b_V = f"blocks.{layer}.attn", _attn(cfg, layer, "b_V")
        per_head = sd[b_V].repeat_interleave(cfg.n_heads // sd[b_V].shape[0], dim=0)  # grouped: to each query head
        sd[f"{p}.b_O"] = sd[f"{p}.b_O"] + einops.einsum(per_head, sd[f"{p}.W_O"], "h e, h e d -> d")
        sd[b_V] = torch.zeros_like(sd[b_V])
    return sd


def refactor_factored_attn_matrices(sd: Weights, cfg) -> Weights:
    """Rewrite W_Q, W_K (with their biases) and W_V, W_O so that each pair is U sqrt(S), sqrt(S) V^T."""
    if cfg.n_key_value_heads is not None:
        raise ValueError("refactor_factored_attn_matrices re-splits each head's W_Q W_K^T and W_V W_O, but with "
                         "grouped-query attention heads share their keys and values: leave it off.")
    sd = fold_value_biases(sd, cfg)
    e = cfg.d_head
    for layer in _blocks(cfg):
        p = f"blocks.{layer}.attn"
        # Queries and keys: append the bias as an extra input row, so that biases are refactored too.
        W_Q = torch.cat([sd[f"{p}.W_Q"], sd[f"{p}.b_Q"][:, None, :]], dim=1)  # [h d+1 e]
        W_K = torch.cat([sd[f"{p}.W_K"], sd[f"{p}.b_K"][:, None, :]], dim=1)
        U, S, Vh = torch.linalg.svd(W_Q @ W_K.transpose(-1, -2))
        root = S[:, :e].sqrt()[:, None, :]
        W_Q, W_K = U[:, :, :e] * root, Vh[:, :e, :].transpose(-1, -2) * root
        sd[f"{p}.W_Q"], sd[f"{p}.b_Q"] = W_Q[:, :-1], W_Q[:, -1]
        sd[f"{p}.W_K"], sd[f"{p}.b_K"] = W_K[:, :-1], W_K[:, -1]
        # Values and outputs.
        U, S, Vh = torch.linalg.svd(sd[f"{p}.W_V"] @ sd[f"{p}.W_O"])
        root = S[:, :e].sqrt()
        sd[f"{p}.W_V"] = U[:, :, :e] * root[:, None, :]
        sd[f"{p}.W_O"] = Vh[:, :e, :] * root[:, :, None]
    return sd
