"""transformers' Gemma (GemmaForCausalLM) and Gemma 2 (Gemma2ForCausalLM) -> classic names.

Both: embeddings multiplied by sqrt(d_model) (folded into W_E; the tied unembedding is not scaled), norms that
multiply by (1 + weight) (stored as w = 1 + weight), GeGLU (gelu_pytorch_tanh), head_dim 256, one key/value head
(Gemma 2B) or several. Gemma 2 adds norms after attention and after the MLP (ln1_post, ln2_post), soft-capped
attention scores and final logits, sliding-window attention in every other layer (the first included), and
scores divided by sqrt(query_pre_attn_scalar).
"""

from __future__ import annotations

import math

from helpers.conversion import hf_decoder

ARCHITECTURES = ("GemmaForCausalLM", "Gemma2ForCausalLM")
MODEL_TYPES = ("gemma", "gemma2")


def _is_gemma2(raw: dict) -> bool:
    return raw.get("model_type") == "gemma2" or "Gemma2ForCausalLM" in (raw.get("architectures") or [])


def config_from_hf(raw: dict, name: str) -> dict:
    # transformers reads hidden_activation first; Gemma 1's legacy hidden_act="gelu" means the tanh approximation.
    act = raw.get("hidden_activation") or raw.get("hidden_act") or "gelu_pytorch_tanh"
    act = "gelu_pytorch_tanh" if act == "gelu" else act
    if not _is_gemma2(raw):
        return hf_decoder.common(raw, name, "GemmaForCausalLM", act_fn=act, default_prepend_bos=True)
    soft_caps = dict(attn_scores_soft_cap=float(raw.get("attn_logit_softcapping") or -1.0),
                     output_logits_soft_cap=float(raw.get("final_logit_softcapping") or -1.0))
    scalar = hf_decoder.get(raw, "query_pre_attn_scalar", default=hf_decoder.head_dim(raw))
    return hf_decoder.common(raw, name, "Gemma2ForCausalLM", act_fn=act, default_prepend_bos=True,
                             use_normalization_before_and_after=True, attn_scale=math.sqrt(scalar),
                             **soft_caps, **hf_decoder.sliding_window(raw))


def layout(raw: dict) -> hf_decoder.Layout:
    norms = ({"input_layernorm": "ln1", "post_attention_layernorm": "ln1_post", "pre_feedforward_layernorm": "ln2",
              "post_feedforward_layernorm": "ln2_post"} if _is_gemma2(raw)
             else {"input_layernorm": "ln1", "post_attention_layernorm": "ln2"})
    bias = bool(raw.get("attention_bias", False))
    return hf_decoder.Layout(norms=norms, norm_plus_one=True, embed_scale=True, qkv_bias=bias, o_bias=bias,
                             tied=bool(raw.get("tie_word_embeddings", True)))
