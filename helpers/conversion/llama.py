"""transformers' Llama (LlamaForCausalLM: Llama 2, Llama 3, 3.1, 3.2) -> classic names.

RMSNorm, rotary positions (Llama 3.1+'s "llama3" rescaled frequencies included), grouped-query attention, SwiGLU.
"""

from __future__ import annotations

from helpers.conversion import hf_decoder

ARCHITECTURES = ("LlamaForCausalLM",)
MODEL_TYPES = ("llama",)


def config_from_hf(raw: dict, name: str) -> dict:
    return hf_decoder.common(raw, name, "LlamaForCausalLM", default_prepend_bos=True)


def layout(raw: dict) -> hf_decoder.Layout:
    return hf_decoder.Layout(tied=bool(raw.get("tie_word_embeddings", False)), **hf_decoder.attention_bias_layout(raw))
