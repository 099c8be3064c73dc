"""State dicts: conversion (transformers GPT-2 -> classic names) and the load-time processing steps.

Each processing step takes a state dict with classic names (``blocks.0.attn.W_Q`` ...) and returns
a new one that computes the same function (same log-probs):

- fold_layer_norm: multiply each LayerNorm's weight into the matrices that read its output and its
  bias into their biases; the LayerNorms become ``LNPre`` (centre and scale only).
- center_writing_weights: remove the mean over d_model from everything that writes to the residual
  stream (every reader starts with a LayerNorm that removes it anyway).
- center_unembed: remove the mean over the vocabulary from W_U and b_U (softmax ignores it).
- fold_value_biases: move b_V into b_O (the attention pattern sums to 1 over source positions).
- refactor_factored_attn_matrices: re-split W_Q W_K^T and W_V W_O by SVD so each factor is balanced.

Einsum letters are those of helpers.model (h head, d d_model, e d_head), with m d_mlp and v d_vocab.

``PROCESSING`` holds the five flags and their defaults, for every caller (from_pretrained,
process_weights_, ...); ``process_state_dict`` applies them in order.
"""

from __future__ import annotations

import einops
import torch

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


def process_state_dict(sd: Weights, cfg: HookedTransformerConfig, **flags: bool) -> tuple[Weights, str | None]:
    """The state dict after the processing steps ``flags`` asks for (others at their ``PROCESSING``
    default), and the normalization type the model then needs (``"LNPre"`` once LayerNorms are folded)."""
    unknown = sorted(set(flags) - set(PROCESSING))
    if unknown:
        raise TypeError(f"Unknown weight-processing flags {unknown}; they are {sorted(PROCESSING)}.")
    flags = {**PROCESSING, **flags}
    normalization = cfg.normalization_type
    if flags["fold_ln"] and normalization == "LN":
        sd, normalization = fold_layer_norm(sd, cfg), "LNPre"
    if flags["center_writing_weights"] and normalization in ("LN", "LNPre"):
        sd = center_writing_weights(sd, cfg)
    if flags["center_unembed"]:
        sd = center_unembed(sd)
    if flags["fold_value_biases"]:
        sd = fold_value_biases(sd, cfg)
    if flags["refactor_factored_attn_matrices"]:
        sd = refactor_factored_attn_matrices(sd, cfg)
    return sd, normalization


def _blocks(cfg):
    return range(cfg.n_layers)


def fold_layer_norm(sd: Weights, cfg) -> Weights:
    sd = dict(sd)

    def fold(ln: str, readers: list[tuple[str, str, str]]):
        """Fold ``ln.w``/``ln.b`` into each (W, b, einsum pattern of W's input dim) that reads it."""
        w, b = sd.pop(f"{ln}.w"), sd.pop(f"{ln}.b")
        for W_name, b_name, pattern in readers:
            W = sd[W_name]
            sd[b_name] = sd[b_name] + einops.einsum(b, W, pattern)
            W = W * w[:, None]  # W's input dim is -2, for W_in [d m] as for W_Q [h d e]
            # The LayerNorm's output is centred, so the mean of W over its input dim does nothing.
            sd[W_name] = W - W.mean(dim=-2, keepdim=True)

    for layer in _blocks(cfg):
        p = f"blocks.{layer}"
        fold(f"{p}.ln1", [(f"{p}.attn.W_{x}", f"{p}.attn.b_{x}", "d, h d e -> h e") for x in "QKV"])
        if not cfg.attn_only:
            fold(f"{p}.ln2", [(f"{p}.mlp.W_in", f"{p}.mlp.b_in", "d, d m -> m")])
            if cfg.act_fn == "solu_ln":
                fold(f"{p}.mlp.ln", [(f"{p}.mlp.W_out", f"{p}.mlp.b_out", "m, m d -> d")])
    fold("ln_final", [("unembed.W_U", "unembed.b_U", "d, d v -> v")])
    return sd


def center_writing_weights(sd: Weights, cfg) -> Weights:
    sd = dict(sd)

    def center(name: str):
        sd[name] = sd[name] - sd[name].mean(dim=-1, keepdim=True)

    center("embed.W_E")
    center("pos_embed.W_pos")
    for layer in _blocks(cfg):
        center(f"blocks.{layer}.attn.W_O")
        center(f"blocks.{layer}.attn.b_O")
        if not cfg.attn_only:
            center(f"blocks.{layer}.mlp.W_out")
            center(f"blocks.{layer}.mlp.b_out")
    return sd


def center_unembed(sd: Weights) -> Weights:
    sd = dict(sd)
    sd["unembed.W_U"] = sd["unembed.W_U"] - sd["unembed.W_U"].mean(dim=-1, keepdim=True)
    sd["unembed.b_U"] = sd["unembed.b_U"] - sd["unembed.b_U"].mean()
    return sd


def fold_value_biases(sd: Weights, cfg) -> Weights:
    sd = dict(sd)
    for layer in _blocks(cfg):
        p = f"blocks.{layer}.attn"
        sd[f"{p}.b_O"] = sd[f"{p}.b_O"] + einops.einsum(sd[f"{p}.b_V"], sd[f"{p}.W_O"], "h e, h e d -> d")
        sd[f"{p}.b_V"] = torch.zeros_like(sd[f"{p}.b_V"])
    return sd


def refactor_factored_attn_matrices(sd: Weights, cfg) -> Weights:
    """Rewrite W_Q, W_K (with their biases) and W_V, W_O so that each pair is U sqrt(S), sqrt(S) V^T."""
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


# ------------------------------------------------------------------------------------------------
# transformers GPT-2 (gpt2, gpt2-medium/large/xl, distilgpt2) -> classic names
# ------------------------------------------------------------------------------------------------


def config_from_hf_gpt2(hf_config, **overrides):
    """A HookedTransformerConfig from a transformers ``GPT2Config``."""
    act = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_new"}
    if hf_config.activation_function not in act:
        raise ValueError(f"Unsupported GPT-2 activation {hf_config.activation_function!r}.")
    if getattr(hf_config, "scale_attn_by_inverse_layer_idx", False):
        raise ValueError("GPT-2 configs with scale_attn_by_inverse_layer_idx=True are not supported.")
    kwargs = dict(
        n_layers=hf_config.n_layer, d_model=hf_config.n_embd, n_heads=hf_config.n_head,
        d_mlp=hf_config.n_inner or 4 * hf_config.n_embd, d_vocab=hf_config.vocab_size,
        n_ctx=hf_config.n_positions, act_fn=act[hf_config.activation_function],
        eps=hf_config.layer_norm_epsilon, normalization_type="LN", original_architecture="GPT2LMHeadModel",
        use_attn_scale=getattr(hf_config, "scale_attn_weights", True),
        tokenizer_name="gpt2" if hf_config.vocab_size == 50257 else None,
        model_name=getattr(hf_config, "_name_or_path", "") or "gpt2-like",
    )
    kwargs.update(overrides)
    return HookedTransformerConfig(**kwargs)


def convert_gpt2_weights(hf_sd: Weights, cfg) -> Weights:
    """Rename and reshape a GPT2LMHeadModel state dict into classic names and shapes."""
    hf = {k.removeprefix("transformer."): v for k, v in hf_sd.items()}
    h, e = cfg.n_heads, cfg.d_head
    sd = {
        "embed.W_E": hf["wte.weight"],
        "pos_embed.W_pos": hf["wpe.weight"],
        "ln_final.w": hf["ln_f.weight"],
        "ln_final.b": hf["ln_f.bias"],
        # GPT-2 ties the unembedding to the embedding; lm_head.weight, when present, is the same tensor.
        "unembed.W_U": hf.get("lm_head.weight", hf["wte.weight"]).T.contiguous(),
        "unembed.b_U": torch.zeros(cfg.d_vocab_out, dtype=hf["wte.weight"].dtype),
    }
    for layer in range(cfg.n_layers):
        src, dst = f"h.{layer}", f"blocks.{layer}"
        sd[f"{dst}.ln1.w"], sd[f"{dst}.ln1.b"] = hf[f"{src}.ln_1.weight"], hf[f"{src}.ln_1.bias"]
        sd[f"{dst}.ln2.w"], sd[f"{dst}.ln2.b"] = hf[f"{src}.ln_2.weight"], hf[f"{src}.ln_2.bias"]
        # c_attn is a Conv1D: x @ W with W [d_model, 3 * d_model], the columns being Q | K | V.
        W_qkv = einops.rearrange(hf[f"{src}.attn.c_attn.weight"], "d (three h e) -> three h d e",
                                 three=3, h=h)
        b_qkv = einops.rearrange(hf[f"{src}.attn.c_attn.bias"], "(three h e) -> three h e", three=3, h=h)
        for i, x in enumerate("QKV"):
            sd[f"{dst}.attn.W_{x}"] = W_qkv[i].contiguous()
            sd[f"{dst}.attn.b_{x}"] = b_qkv[i].contiguous()
        # c_proj reads the heads' outputs concatenated: its rows are (head, d_head).
        sd[f"{dst}.attn.W_O"] = einops.rearrange(hf[f"{src}.attn.c_proj.weight"], "(h e) d -> h e d",
                                                 h=h, e=e)
        sd[f"{dst}.attn.b_O"] = hf[f"{src}.attn.c_proj.bias"]
        sd[f"{dst}.mlp.W_in"] = hf[f"{src}.mlp.c_fc.weight"]
        sd[f"{dst}.mlp.b_in"] = hf[f"{src}.mlp.c_fc.bias"]
        sd[f"{dst}.mlp.W_out"] = hf[f"{src}.mlp.c_proj.weight"]
        sd[f"{dst}.mlp.b_out"] = hf[f"{src}.mlp.c_proj.bias"]
    return sd
