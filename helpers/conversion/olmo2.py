"""transformers' OLMo 2 (Olmo2ForCausalLM) -> classic names.

Llama's layers with the norms moved: none before attention or the MLP (no ln1, ln2), one after each, inside
hook_attn_out / hook_mlp_out (ln1_post, ln2_post), and an RMSNorm on all the heads' queries and keys at once
(attn.q_norm, attn.k_norm over n_heads d_head) before the rotation.
"""

from __future__ import annotations

from helpers.conversion import hf_decoder

ARCHITECTURES = ("Olmo2ForCausalLM",)
MODEL_TYPES = ("olmo2",)


def config_from_hf(raw: dict, name: str) -> dict:
    # OLMo 2's tokenizer adds no BOS (its <|endoftext|> ends documents).
    return hf_decoder.common(raw, name, "Olmo2ForCausalLM", use_qk_norm=True, qk_norm_per_head=False,
                             use_normalization_after_only=True, default_prepend_bos=False)


def layout(raw: dict) -> hf_decoder.Layout:
    return hf_decoder.Layout(norms={"post_attention_layernorm": "ln1_post", "post_feedforward_layernorm": "ln2_post"},
                             qk_norm="all_heads", tied=bool(raw.get("tie_word_embeddings", False)),
                             **hf_decoder.attention_bias_layout(raw))
