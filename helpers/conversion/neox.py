"""transformers' GPT-NeoX (GPTNeoXForCausalLM: Pythia) -> classic names.

LayerNorms with biases, attention and MLP in parallel (use_parallel_residual: both read resid_pre), rotary positions
on a part of each head (rotary_pct / partial_rotary_factor: a quarter in Pythia) with NeoX's layout (dimension i
pairs with i + rotary_dim / 2), query, key and value in one matrix (per head: q, k, v), biases everywhere, an
untied unembedding (embed_out). Pythia's tokenizer adds no BOS: default_prepend_bos is False.
"""

from __future__ import annotations

import re

import einops
import torch

from helpers.conversion import hf_decoder

ARCHITECTURES = ("GPTNeoXForCausalLM",)
MODEL_TYPES = ("gpt_neox",)
PREFIX = "gpt_neox."


def config_from_hf(raw: dict, name: str) -> dict:
    d, h = raw["hidden_size"], raw["num_attention_heads"]
    act = raw.get("hidden_act", "gelu")
    return dict(n_layers=raw["num_hidden_layers"], d_model=d, n_heads=h, d_head=d // h, d_mlp=raw["intermediate_size"],
                d_vocab=raw["vocab_size"], n_ctx=hf_decoder.get(raw, "max_position_embeddings", default=2048),
                eps=hf_decoder.get(raw, "layer_norm_eps", default=1e-5), act_fn=act, normalization_type="LN",
                parallel_attn_mlp=bool(raw.get("use_parallel_residual", True)),
                original_architecture="GPTNeoXForCausalLM",
                model_name=name, tokenizer_name=None, device="cpu", default_prepend_bos=False,
                **hf_decoder.rope({**raw, "head_dim": d // h}))


def layout(raw: dict) -> dict:
    return dict(bias=bool(raw.get("attention_bias", True)), tied=bool(raw.get("tie_word_embeddings", False)))


def hf_shapes(raw: dict, layout: dict, cfg) -> dict[str, tuple[int, ...]]:
    d, m, v = cfg.d_model, cfg.d_mlp, cfg.d_vocab
    shapes = {"embed_in.weight": (v, d), "final_layer_norm.weight": (d,), "final_layer_norm.bias": (d,)}
    if not layout["tied"]:
        shapes["embed_out.weight"] = (v, d)
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "input_layernorm.bias": (d,),
                       p + "post_attention_layernorm.weight": (d,), p + "post_attention_layernorm.bias": (d,),
                       p + "attention.query_key_value.weight": (3 * d, d), p + "attention.dense.weight": (d, d),
                       p + "mlp.dense_h_to_4h.weight": (m, d), p + "mlp.dense_h_to_4h.bias": (m,),
                       p + "mlp.dense_4h_to_h.weight": (d, m), p + "mlp.dense_4h_to_h.bias": (d,)})
        if layout["bias"]:
            shapes.update({p + "attention.query_key_value.bias": (3 * d,), p + "attention.dense.bias": (d,)})
    return shapes


def strip(name: str, layout: dict) -> str:
    """The name without ``gpt_neox.``; transformers 5 calls the unembedding lm_head (4.x checkpoints: embed_out)."""
    return "embed_out.weight" if name == "lm_head.weight" else name.removeprefix(PREFIX)


_LAYER = re.compile(r"layers\.(\d+)\.(.+)")


def convert_tensor(name: str, t: torch.Tensor, layout: dict, cfg) -> dict[str, torch.Tensor]:
    h = cfg.n_heads
    if name == "embed_in.weight":
        return {"embed.W_E": t, **({"unembed.W_U": t.T.contiguous()} if layout["tied"] else {})}
    if name == "embed_out.weight":
        return {"unembed.W_U": t.T.contiguous()}
    if name.startswith("final_layer_norm."):
        return {"ln_final." + ("w" if name.endswith(".weight") else "b"): t}
    match = _LAYER.fullmatch(name)
    if match is None:
        return {}
    b, rest = f"blocks.{match.group(1)}.", match.group(2)
    module, _, kind = rest.rpartition(".")
    short = "w" if kind == "weight" else "b"
    if module in ("input_layernorm", "post_attention_layernorm"):
        return {b + f"{'ln1' if module == 'input_layernorm' else 'ln2'}.{short}": t}
    if module == "attention.query_key_value":  # rows (head, q/k/v, d_head): each head's q, k, v in a row block
        if kind == "weight":
            W = einops.rearrange(t, "(h three e) d -> three h d e", three=3, h=h)
            return {b + f"attn.W_{x}": W[i].contiguous() for i, x in enumerate("QKV")}
        bias = einops.rearrange(t, "(h three e) -> three h e", three=3, h=h)
        return {b + f"attn.b_{x}": bias[i].contiguous() for i, x in enumerate("QKV")}
    if module == "attention.dense":
        if kind == "weight":
            return {b + "attn.W_O": einops.rearrange(t, "d (h e) -> h e d", h=h)}
        return {b + "attn.b_O": t}
    mlp = {"mlp.dense_h_to_4h": ("W_in", "b_in"), "mlp.dense_4h_to_h": ("W_out", "b_out")}
    if module in mlp:
        W, bias = mlp[module]
        return {b + f"mlp.{W}": t.T.contiguous()} if kind == "weight" else {b + f"mlp.{bias}": t}
    return {}
