"""transformers' Qwen 2 / 2.5 (Qwen2ForCausalLM) and Qwen 3 (Qwen3ForCausalLM) -> classic names.

Llama's layers with biases on q, k and v (Qwen 2), or an RMSNorm on each head's query and key before the rotation
(Qwen 3: attn.q_norm, attn.k_norm, and head_dim given apart from d_model / n_heads). Sliding windows only when
``use_sliding_window`` (off in the published models). Qwen's tokenizer adds no BOS: default_prepend_bos is False.
"""

from __future__ import annotations

from helpers.conversion import hf_decoder

ARCHITECTURES = ("Qwen2ForCausalLM", "Qwen3ForCausalLM")
MODEL_TYPES = ("qwen2", "qwen3")


def _is_qwen3(raw: dict) -> bool:
    return raw.get("model_type") == "qwen3" or "Qwen3ForCausalLM" in (raw.get("architectures") or [])


def config_from_hf(raw: dict, name: str) -> dict:
    qwen3 = _is_qwen3(raw)
    extra = dict(use_qk_norm=True, qk_norm_per_head=True) if qwen3 else {}
    return hf_decoder.common(raw, name, "Qwen3ForCausalLM" if qwen3 else "Qwen2ForCausalLM",
                             default_prepend_bos=False, **extra, **hf_decoder.sliding_window(raw))


def layout(raw: dict) -> hf_decoder.Layout:
    tied = bool(raw.get("tie_word_embeddings", False))
    if _is_qwen3(raw):
        bias = bool(raw.get("attention_bias", False))
        return hf_decoder.Layout(tied=tied, qk_norm="per_head", qkv_bias=bias, o_bias=bias)
    return hf_decoder.Layout(tied=tied, qkv_bias=True)
