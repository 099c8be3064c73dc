"""transformers' Gemma (GemmaForCausalLM), Gemma 2 (Gemma2ForCausalLM) and Gemma 3 (Gemma3ForCausalLM, and the text
part of Gemma3ForConditionalGeneration) -> classic names.

All: embeddings multiplied by sqrt(d_model) (folded into W_E; the tied unembedding is not scaled), norms that
multiply by (1 + weight) (stored as w = 1 + weight), GeGLU (gelu_pytorch_tanh), head_dim 256, one key/value head
(Gemma 2B) or several. Gemma 2 adds norms after attention and after the MLP (ln1_post, ln2_post), soft-capped
attention scores and final logits, sliding-window attention in every other layer (the first included), and
scores divided by sqrt(query_pre_attn_scalar). Gemma 3 keeps Gemma 2's layer without the soft-caps, adds an
RMSNorm on each head's query and key (attn.q_norm, attn.k_norm, also 1 + weight), slides in five layers out of six,
and gives its local layers their own rotary theta (rotary_base_local, 10,000 against 1,000,000); from 4B up its
global layers' positions are scaled linearly (rotary_scaling_factor 8). The 4B and larger checkpoints are
multimodal: only the language model is read (``language_model.model.*`` on disk, ``model.language_model.*`` in
memory), the vision tower and its projector are left out.
"""

from __future__ import annotations

import math

from helpers.conversion import hf_decoder

ARCHITECTURES = ("GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration")
MODEL_TYPES = ("gemma", "gemma2", "gemma3_text", "gemma3")

#: transformers' Gemma3TextConfig defaults, for the fields a Gemma 3 config.json leaves out: the multimodal
#: checkpoints' ``text_config`` lists only what differs (six fields for gemma-3-4b).
GEMMA3_DEFAULTS = dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                       hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131072, rms_norm_eps=1e-6,
                       rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, query_pre_attn_scalar=256,
                       sliding_window=4096, sliding_window_pattern=6, attention_bias=False, tie_word_embeddings=True)


def _generation(raw: dict) -> int:
    """1, 2 or 3."""
    types = {"gemma2": 2, "gemma3_text": 3, "gemma3": 3}
    if raw.get("model_type") in types:
        return types[raw["model_type"]]
    architectures = raw.get("architectures") or []
    return 3 if any(a.startswith("Gemma3") for a in architectures) else 2 if "Gemma2ForCausalLM" in architectures else 1


def _text(raw: dict) -> dict:
    """A Gemma 3 config's language model (its ``text_config`` if multimodal), transformers' defaults filled in."""
    text = raw.get("text_config") or raw
    return {**GEMMA3_DEFAULTS, **{k: v for k, v in text.items() if v is not None}}


def _activation(raw: dict) -> str:
    # transformers reads hidden_activation first; Gemma 1's legacy hidden_act="gelu" means the tanh approximation.
    act = raw.get("hidden_activation") or raw.get("hidden_act") or "gelu_pytorch_tanh"
    return "gelu_pytorch_tanh" if act == "gelu" else act


def config_from_hf(raw: dict, name: str) -> dict:
    generation = _generation(raw)
    if generation == 1:
        return hf_decoder.common(raw, name, "GemmaForCausalLM", act_fn=_activation(raw), default_prepend_bos=True)
    text = _text(raw) if generation == 3 else raw
    if text.get("use_bidirectional_attention"):
        raise ValueError(f"{name}: use_bidirectional_attention=True (EmbeddingGemma) is an encoder, not a causal "
                         "language model; it is not supported.")
    default = {"gemma3": "Gemma3ForConditionalGeneration", "gemma3_text": "Gemma3ForCausalLM"}.get(
        raw.get("model_type"), "Gemma2ForCausalLM")
    architecture = next((a for a in raw.get("architectures") or [] if a in ARCHITECTURES), default)
    soft_caps = dict(attn_scores_soft_cap=float(text.get("attn_logit_softcapping") or -1.0),
                     output_logits_soft_cap=float(text.get("final_logit_softcapping") or -1.0))
    scalar = hf_decoder.get(text, "query_pre_attn_scalar", default=hf_decoder.head_dim(text))
    qk_norm = dict(use_qk_norm=True, qk_norm_per_head=True) if generation == 3 else {}
    return hf_decoder.common(text, name, architecture, act_fn=_activation(text), default_prepend_bos=True,
                             use_normalization_before_and_after=True, attn_scale=math.sqrt(scalar),
                             **soft_caps, **qk_norm, **hf_decoder.sliding_window(text))


def layout(raw: dict) -> hf_decoder.Layout:
    generation = _generation(raw)
    text = _text(raw) if generation == 3 else raw
    norms = ({"input_layernorm": "ln1", "post_attention_layernorm": "ln1_post", "pre_feedforward_layernorm": "ln2",
              "post_feedforward_layernorm": "ln2_post"} if generation > 1
             else {"input_layernorm": "ln1", "post_attention_layernorm": "ln2"})
    bias = bool(text.get("attention_bias", False))
    return hf_decoder.Layout(norms=norms, norm_plus_one=True, embed_scale=True, qkv_bias=bias, o_bias=bias,
                             qk_norm="per_head" if generation == 3 else None,
                             tied=bool(text.get("tie_word_embeddings", True)))


#: Where the language model's tensors are: Gemma3ForConditionalGeneration's in memory (transformers 4.52+) and on
#: disk, then the ...ForCausalLM's. A multimodal checkpoint's vision tensors keep a prefix, and are left out.
PREFIXES = ("model.language_model.", "language_model.model.", "model.")


def strip(name: str, layout: hf_decoder.Layout) -> str:
    return next((name.removeprefix(p) for p in PREFIXES if name.startswith(p)), name)
