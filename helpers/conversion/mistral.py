"""transformers' Mistral (MistralForCausalLM: Mistral 7B) -> classic names.

Llama's layers with sliding-window attention in every layer (``sliding_window``: 4096 in Mistral-7B-v0.1; none in
later versions).
"""

from __future__ import annotations

from helpers.conversion import hf_decoder

ARCHITECTURES = ("MistralForCausalLM",)
MODEL_TYPES = ("mistral",)


def config_from_hf(raw: dict, name: str) -> dict:
    return hf_decoder.common(raw, name, "MistralForCausalLM", default_prepend_bos=True,
                             **hf_decoder.sliding_window(raw))


def layout(raw: dict) -> hf_decoder.Layout:
    return hf_decoder.Layout(tied=bool(raw.get("tie_word_embeddings", False)))
