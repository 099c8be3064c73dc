"""``HookedTransformerConfig``: the hyperparameters of a HookedTransformer.

Weights, loading and the course-model reader build configs without importing the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from helpers import utils

#: The MLP activations, by their config name (``act_fn``): the model applies ``ACTIVATIONS[cfg.act_fn]``
#: ("solu_ln" is SoLU followed by a LayerNorm in the MLP; "gelu_pytorch_tanh" is another name of gelu_new).
ACTIVATIONS = {"gelu": F.gelu, "gelu_new": utils.gelu_new, "gelu_pytorch_tanh": utils.gelu_new,
               "gelu_fast": utils.gelu_fast, "relu": F.relu, "silu": F.silu, "solu": utils.solu,
               "solu_ln": utils.solu}
NORMALIZATION_TYPES = ("LN", "LNPre", "RMS", "RMSPre", None)
#: Where the learned positions go: added to the residual stream, or only to the queries' and keys' inputs.
POSITIONAL_EMBEDDING_TYPES = ("standard", "shortformer", "rotary")
ATTENTION_DIRS = ("causal", "bidirectional")


@dataclass
class HookedTransformerConfig:
    """Hyperparameters of a HookedTransformer, with the classic names.

    ``d_head`` defaults to d_model // n_heads, ``d_mlp`` to 4 d_model, ``d_vocab`` to the tokenizer's size.
    """

    # Fields keep the classic order (it is the order ``print(cfg)`` shows).
    # --- shape ---
    n_layers: int
    d_model: int  # width of the residual stream
    n_ctx: int  # longest input, in tokens
    d_head: int = -1
    n_heads: int = -1
    d_mlp: int | None = None  # None with attn_only
    d_vocab: int = -1  # -1: read from the tokenizer
    d_vocab_out: int = -1  # -1: d_vocab
    # --- layers ---
    act_fn: str = "gelu_new"  # a key of ACTIVATIONS
    normalization_type: str | None = "LN"  # "LN" (with weights), "LNPre" (centre and scale only), "RMS", "RMSPre", None
    attn_only: bool = False  # blocks without MLP
    eps: float = 1e-5  # LayerNorm epsilon
    gated_mlp: bool = False  # MLP (act(x W_gate) * x W_in + b_in) W_out + b_out (GatedMLP), as in Llama
    # --- name and tokenizer ---
    model_name: str = "custom"
    tokenizer_name: str | None = None  # "gpt2": the GPT-2 tokenizer shipped in data/tokenizer
    default_prepend_bos: bool = True  # to_tokens puts BOS first unless told otherwise
    # --- attention, and the optional hook points (off by default: they cost memory) ---
    positional_embedding_type: str = "standard"  # learned positions: "standard" or "shortformer" (q and k only)
    attention_dir: str = "causal"  # "causal" (each position reads the ones before it) or "bidirectional"
    n_key_value_heads: int | None = None  # grouped-query attention: key/value heads, each shared by a group
    ungroup_grouped_query_attention: bool = False  # grouped keys and values repeated per query head before hooks
    use_attn_result: bool = False  # blocks.L.attn.hook_result: each head's output in d_model
    use_split_qkv_input: bool = False  # blocks.L.hook_{q,k,v}_input: one copy of the input per head
    use_hook_mlp_in: bool = False  # blocks.L.hook_mlp_in
    use_attn_in: bool = False  # blocks.L.hook_attn_in: one input per head, shared by q, k and v
    use_attn_scale: bool = True  # divide attention scores by sqrt(d_head)
    # --- initialisation and placement ---
    initializer_range: float = -1.0  # std of the weight init; -1: 0.8 / sqrt(d_model)
    seed: int | None = None  # seed of the weight init
    device: str | None = None  # None: utils.get_device()
    dtype: torch.dtype = torch.float32
    # --- provenance ---
    original_architecture: str | None = None
    checkpoint_index: int | None = None  # which training checkpoint was loaded, if any
    checkpoint_value: int | None = None
    # --- the families beyond GPT-2 (Llama, Qwen, Mistral, Gemma, Pythia, OLMo): TransformerLens' names ---
    rotary_dim: int | None = None  # rotary positions: dimensions rotated per head (None: d_head; Pythia d_head / 4)
    rotary_base: float = 10000.0  # theta of the rotary frequencies
    rotary_base_local: float | None = None  # theta of the local (sliding-window) layers, if theirs differs (Gemma 3)
    rotary_scaling_factor: float = 1.0  # linear rope scaling: global layers' frequencies divided by it (Gemma 3 4B+)
    rotary_adjacent_pairs: bool = False  # False: pairs (i, i + rotary_dim / 2), Llama and NeoX; True: GPT-J's
    use_NTK_by_parts_rope: bool = False  # Llama 3's rescaled rotary frequencies (rope_type "llama3")
    NTK_by_parts_low_freq_factor: float = 1.0
    NTK_by_parts_high_freq_factor: float = 4.0
    NTK_by_parts_factor: float = 8.0
    NTK_original_ctx_len: int = 8192
    parallel_attn_mlp: bool = False  # attention and MLP both read resid_pre (GPT-NeoX, Pythia): no resid_mid
    use_qk_norm: bool = False  # RMSNorms attn.q_norm / attn.k_norm on the queries and keys (Qwen 3, OLMo 2)
    qk_norm_per_head: bool = True  # True: over d_head (Qwen 3); False: over all heads at once (OLMo 2)
    use_normalization_before_and_after: bool = False  # ln1_post / ln2_post on attn_out and mlp_out (Gemma 2)
    use_normalization_after_only: bool = False  # ln1_post / ln2_post, and no ln1 / ln2 (OLMo 2)
    attn_scale: float = -1.0  # what the scores are divided by; -1: sqrt(d_head) (Gemma 2: sqrt(query_pre_attn_scalar))
    attn_scores_soft_cap: float = -1.0  # > 0: scores -> cap * tanh(scores / cap) before the mask (Gemma 2)
    output_logits_soft_cap: float = -1.0  # > 0: logits -> cap * tanh(logits / cap) (Gemma 2)
    use_local_attn: bool = False  # sliding-window attention in the layers attn_types marks "local"
    window_size: int | None = None  # a local layer's query reads its last window_size positions (itself included)
    attn_types: list | None = None  # per layer, "global" or "local" (None with use_local_attn: all local)

    def __post_init__(self):
        if self.n_heads == -1 and self.d_head == -1:
            raise ValueError("Give n_heads or d_head (or both).")
        if self.n_heads == -1:
            self.n_heads = self.d_model // self.d_head
        if self.d_head == -1:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; give d_head."
                )
            self.d_head = self.d_model // self.n_heads
        if not self.attn_only and self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        if self.act_fn not in ACTIVATIONS:
            raise ValueError(f"act_fn={self.act_fn!r} is not one of {sorted(ACTIVATIONS)}.")
        if self.normalization_type not in NORMALIZATION_TYPES:
            raise ValueError(
                f"normalization_type must be 'LN', 'LNPre', 'RMS', 'RMSPre' or None, got {self.normalization_type!r}."
            )
        if self.positional_embedding_type not in POSITIONAL_EMBEDDING_TYPES:
            raise ValueError(f"positional_embedding_type={self.positional_embedding_type!r} is not supported: use "
                             "'standard' (learned positions added to the residual stream), 'shortformer' "
                             "(learned positions added to the queries' and keys' inputs only) or 'rotary' (queries "
                             "and keys rotated by position).")
        if self.positional_embedding_type == "rotary" and self.rotary_dim is None:
            self.rotary_dim = self.d_head
        if self.rotary_dim is not None and (self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.d_head):
            raise ValueError(f"rotary_dim={self.rotary_dim} must be even and at most d_head={self.d_head}.")
        if not self.rotary_scaling_factor > 0:
            raise ValueError(f"rotary_scaling_factor={self.rotary_scaling_factor} must be positive (1.0: no scaling).")
        if self.use_local_attn and not (isinstance(self.window_size, int) and self.window_size > 0):
            raise ValueError("use_local_attn needs window_size, a positive number of positions.")
        if self.attn_types is not None and len(self.attn_types) != self.n_layers:
            raise ValueError(f"attn_types has {len(self.attn_types)} entries for {self.n_layers} layers.")
        if self.use_normalization_before_and_after and self.use_normalization_after_only:
            raise ValueError("Give use_normalization_before_and_after or use_normalization_after_only, not both.")
        if self.attention_dir not in ATTENTION_DIRS:
            raise ValueError(f"attention_dir must be 'causal' or 'bidirectional', got {self.attention_dir!r}.")
        if self.n_key_value_heads is not None:
            if self.n_key_value_heads <= 0 or self.n_heads % self.n_key_value_heads:
                raise ValueError(f"n_key_value_heads={self.n_key_value_heads} must divide n_heads={self.n_heads}: "
                                 "each key/value head serves the same number of query heads.")
            if self.use_attn_in:
                raise ValueError("use_attn_in gives q, k and v one shared input per head, which grouped-query "
                                 "attention (n_key_value_heads) cannot take: use use_split_qkv_input instead.")
        if self.d_vocab_out == -1:
            self.d_vocab_out = self.d_vocab
        if self.attn_scale <= 0:
            self.attn_scale = math.sqrt(self.d_head)
        if self.initializer_range < 0:
            self.initializer_range = 0.8 / math.sqrt(self.d_model)
        if self.device is None:
            self.device = utils.get_device()

    def is_layer_norm_activation(self) -> bool:
        """Whether the MLP normalises its activation with a LayerNorm (act_fn "solu_ln")."""
        return self.act_fn.endswith("_ln")

    @property
    def n_params(self) -> int:
        """Weights of the attention and MLP layers (no embeddings, no biases), as in the classic config (which
        counts grouped key/value weights as if every head had its own)."""
        attn = 4 * self.n_heads * self.d_model * self.d_head
        mlp = 0 if self.attn_only else (2 + self.gated_mlp) * self.d_model * self.d_mlp
        return self.n_layers * (attn + mlp)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["dtype"] = str(self.dtype).removeprefix("torch.")
        return d

    @classmethod
    def unwrap(cls, config: HookedTransformerConfig | dict) -> HookedTransformerConfig:
        """The config itself, or one built from a dict (every component accepts either)."""
        return cls.from_dict(config) if isinstance(config, dict) else config

    @classmethod
    def from_dict(cls, d: dict) -> HookedTransformerConfig:
        """A config from ``to_dict()``'s output (keys that are not fields are ignored)."""
        d = dict(d)
        if isinstance(d.get("dtype"), str):
            d["dtype"] = getattr(torch, d["dtype"])
        return cls(**{k: v for k, v in d.items() if k in FIELDS})

    def __repr__(self) -> str:
        lines = [f"    {k}: {v!r}" for k, v in self.to_dict().items()]
        return "HookedTransformerConfig:\n" + "\n".join(lines)


FIELDS = frozenset(f.name for f in fields(HookedTransformerConfig))
