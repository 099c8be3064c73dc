"""transformers' GPT-2 (gpt2, gpt2-medium/large/xl, distilgpt2, a user's own) -> classic names.

Einsum letters as in helpers.model: h head, d d_model, e d_head.
"""

from __future__ import annotations

import einops
import torch

from helpers.config import HookedTransformerConfig

#: The sizes a GPT-2 ``config.json`` must give (positive integers); loading checks them before anything else.
REQUIRED_FIELDS = ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions")
#: The ``model_type`` of the transformers configs this module converts.
MODEL_TYPE = "gpt2"
_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_new"}


def config_from_hf_gpt2(hf_config, **overrides) -> HookedTransformerConfig:
    """A HookedTransformerConfig from a transformers ``GPT2Config``."""
    if hf_config.activation_function not in _ACTIVATIONS:
        raise ValueError(f"Unsupported GPT-2 activation {hf_config.activation_function!r}.")
    if getattr(hf_config, "scale_attn_by_inverse_layer_idx", False):
        raise ValueError("GPT-2 configs with scale_attn_by_inverse_layer_idx=True are not supported.")
    kwargs = dict(
        n_layers=hf_config.n_layer, d_model=hf_config.n_embd, n_heads=hf_config.n_head,
        d_mlp=hf_config.n_inner or 4 * hf_config.n_embd, d_vocab=hf_config.vocab_size,
        n_ctx=hf_config.n_positions, act_fn=_ACTIVATIONS[hf_config.activation_function],
        eps=hf_config.layer_norm_epsilon, normalization_type="LN", original_architecture="GPT2LMHeadModel",
        use_attn_scale=getattr(hf_config, "scale_attn_weights", True),
        tokenizer_name="gpt2" if hf_config.vocab_size == 50257 else None,
        model_name=getattr(hf_config, "_name_or_path", "") or "gpt2-like",
    )
    kwargs.update(overrides)
    return HookedTransformerConfig(**kwargs)


def gpt2_shapes(hf_config) -> dict[str, tuple[int, ...]]:
    """The tensors of a GPT-2 state dict (names without ``transformer.``) and their shapes, from its config."""
    d, m = hf_config.n_embd, hf_config.n_inner or 4 * hf_config.n_embd
    shapes = {"wte.weight": (hf_config.vocab_size, d), "wpe.weight": (hf_config.n_positions, d),
              "ln_f.weight": (d,), "ln_f.bias": (d,)}
    for i in range(hf_config.n_layer):
        shapes.update({f"h.{i}.{k}": shape for k, shape in [
            ("ln_1.weight", (d,)), ("ln_1.bias", (d,)), ("ln_2.weight", (d,)), ("ln_2.bias", (d,)),
            ("attn.c_attn.weight", (d, 3 * d)), ("attn.c_attn.bias", (3 * d,)), ("attn.c_proj.weight", (d, d)),
            ("attn.c_proj.bias", (d,)), ("mlp.c_fc.weight", (d, m)), ("mlp.c_fc.bias", (m,)),
            ("mlp.c_proj.weight", (m, d)), ("mlp.c_proj.bias", (d,))]})
    return shapes


def convert_gpt2_weights(hf_sd: dict[str, torch.Tensor], cfg: HookedTransformerConfig) -> dict[str, torch.Tensor]:
    """Rename and reshape a GPT2LMHeadModel (or GPT2Model) state dict into classic names and shapes."""
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


def gpt2_config(hf_config, name: str) -> dict:
    """The config dict of a transformers GPT-2 (its ``GPT2Config``); a clear error for a transformers model of
    another type."""
    if hf_config.model_type != MODEL_TYPE:
        raise ValueError(f"{name}: a transformers model of type {hf_config.model_type!r} was given; only GPT-2 "
                         "architectures (model_type 'gpt2': GPT2LMHeadModel, GPT2Model) can be converted.")
    return config_from_hf_gpt2(hf_config, model_name=name, device="cpu").to_dict()


def convert_gpt2(hf_config, hf_sd: dict[str, torch.Tensor], name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config dict and classic float32 state dict of a transformers GPT-2 (its config and state dict)."""
    config = gpt2_config(hf_config, name)
    weights = convert_gpt2_weights({k: v.float() for k, v in hf_sd.items()}, HookedTransformerConfig.from_dict(config))
    return config, weights
