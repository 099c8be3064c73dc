"""Conversion of published state dicts to the classic names, one module per model family.

Each module says what a family's files hold and how they map onto a HookedTransformer: its config
(``config_from_hf_<family>`` / ``config_from_hf``), the tensors a state dict must have and their shapes (the shape
table that helpers.loading checks files against), and the renaming and reshaping of the weights.

- ``gpt2``: transformers' GPT-2 (gpt2, gpt2-medium/large/xl, distilgpt2, and a user's own GPT-2).
- ``classic``: state dicts already in the classic format (Neel Nanda's toy models, othello-gpt, ARENA's
  attn_only_2L_half): the sizes a file implies, the shape table of a classic config, and the buffers to drop.
- The families beyond GPT-2, each converted one tensor at a time (a sharded checkpoint shard by shard; what they
  share is in ``hf_decoder``): ``llama`` (Llama 2, 3, 3.1, 3.2), ``mistral``, ``qwen`` (Qwen 2, 2.5, 3), ``gemma``
  (Gemma, Gemma 2, Gemma 3 and the language model of a multimodal Gemma 3), ``neox`` (GPT-NeoX: Pythia),
  ``olmo2``. ``family_for`` picks the module of a ``config.json``.

helpers.loading fetches and checks the files and picks the family; helpers.weights processes the classic
state dict once it is converted.
"""

from __future__ import annotations

from helpers.conversion import gemma, hf_decoder, llama, mistral, neox, olmo2, qwen

#: The families beyond GPT-2, each a module with ARCHITECTURES, MODEL_TYPES, config_from_hf and layout.
FAMILIES = (llama, mistral, qwen, gemma, neox, olmo2)
#: Every transformers architecture from_pretrained converts (GPT-2's included).
SUPPORTED_ARCHITECTURES = ("GPT2LMHeadModel", *(a for family in FAMILIES for a in family.ARCHITECTURES))


def family_for(raw: dict, name: str):
    """The family module of a transformers config (a ``config.json`` read as a dict), from its ``architectures``
    or ``model_type``; a clear error listing the supported architectures otherwise."""
    architectures = raw.get("architectures") or []
    for family in FAMILIES:
        if any(a in family.ARCHITECTURES for a in architectures) or raw.get("model_type") in family.MODEL_TYPES:
            return family
    what = ", ".join(architectures) or f"model_type {raw.get('model_type')!r}"
    raise ValueError(f"{name}: the architecture {what} is not supported. Supported architectures: "
                     f"{', '.join(SUPPORTED_ARCHITECTURES)}.")


def converter(family):
    """(hf_shapes, strip, convert_tensor) of a family: its own, or hf_decoder's Llama-like ones."""
    return (getattr(family, "hf_shapes", hf_decoder.hf_shapes), getattr(family, "strip", hf_decoder.strip),
            getattr(family, "convert_tensor", hf_decoder.convert_tensor))
