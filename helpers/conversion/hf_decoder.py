"""What the families beyond GPT-2 share: reading a transformers ``config.json`` (4.45+ and 5.x fields), and converting
its decoder's tensors one at a time, so that a sharded checkpoint is converted shard by shard.

A family module (llama, mistral, qwen, gemma, neox, olmo2) gives, for its architectures:

- ``config_from_hf(raw, name)``: the HookedTransformerConfig dict of a ``config.json`` read as a dict (``raw``; for a
  transformers model in memory, ``model.config.to_dict()``);
- a ``Layout``: how its tensors are named and transformed; ``hf_shapes(raw, layout, cfg)`` lists the tensors a
  checkpoint must have, ``convert_tensor(name, tensor, layout, cfg)`` converts one (a tied embedding gives the
  unembedding too), ``finish(sd, cfg, dtype, parts)`` adds the zero biases the checkpoint leaves out.

Einsum letters as in helpers.model: h head, d d_model, e d_head, m d_mlp.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import einops
import torch

#: Names of tensors some checkpoints carry that are not weights (rotary tables, old attention masks): ignored.
NOT_WEIGHTS = re.compile(r".*(rotary_emb\.inv_freq|attention\.bias|attention\.masked_bias|\.masked_bias)$")


# ================================================================================================
# config.json: the fields of transformers 4.45+ and 5.x
# ================================================================================================


def get(raw: dict, *names: str, default=None):
    """The first of ``names`` that ``raw`` gives (not None), else ``default``."""
    for name in names:
        if raw.get(name) is not None:
            return raw[name]
    return default


def rope(raw: dict) -> dict:
    """The rotary fields of a HookedTransformerConfig: theta from ``rope_theta`` (4.x) or ``rope_parameters`` (5.x),
    the rotated fraction from ``rotary_pct`` (4.x GPT-NeoX) or ``partial_rotary_factor``, Llama 3's rescaling
    (rope_type "llama3", in ``rope_scaling`` or ``rope_parameters``) and the linear one ("linear"). Gemma 3's local
    layers have their own theta: ``rope_local_base_freq`` (4.x), or ``rope_parameters`` per layer type (5.x), whose
    "full_attention" entry is then the global layers'. Other rope types are refused."""
    params = {**(raw.get("rope_scaling") or {}), **(raw.get("rope_parameters") or {})}
    local = {"rope_theta": raw["rope_local_base_freq"]} if raw.get("rope_local_base_freq") is not None else {}
    if params and all(isinstance(v, dict) for v in params.values()):  # per layer type
        local, params = params.get("sliding_attention") or {}, params.get("full_attention") or {}
    theta = params.get("rope_theta", get(raw, "rope_theta", "rotary_emb_base", default=10000.0))
    fraction = get(raw, "partial_rotary_factor", "rotary_pct", default=params.get("partial_rotary_factor", 1.0))
    out = dict(positional_embedding_type="rotary", rotary_base=float(theta), rotary_adjacent_pairs=False)
    d_head = head_dim(raw)
    out["rotary_dim"] = int(d_head * fraction)  # transformers: int(head_dim * partial_rotary_factor)
    rope_type = _rope_type(params)
    if rope_type == "llama3":
        out.update(use_NTK_by_parts_rope=True, NTK_by_parts_factor=float(params["factor"]),
                   NTK_by_parts_low_freq_factor=float(params["low_freq_factor"]),
                   NTK_by_parts_high_freq_factor=float(params["high_freq_factor"]),
                   NTK_original_ctx_len=int(params["original_max_position_embeddings"]))
    elif rope_type == "linear":
        out["rotary_scaling_factor"] = float(params["factor"])
    elif rope_type != "default":
        raise ValueError(f"Rotary scaling {rope_type!r} is not supported (supported: the default rotary embedding, "
                         "'linear' and Llama 3's 'llama3').")
    if local:
        if _rope_type(local) != "default":
            raise ValueError(f"Rotary scaling {_rope_type(local)!r} in the sliding-window layers is not supported "
                             "(supported there: the default rotary embedding, with its own theta).")
        out["rotary_base_local"] = float(local.get("rope_theta", theta))
    elif rope_type == "linear" and "sliding_attention" in layer_types(raw):
        raise ValueError("Linear rotary scaling with sliding-window layers that have no rotary parameters of their "
                         "own is not supported: the classic config scales the global layers only.")
    return out


def _rope_type(params: dict) -> str:
    return params.get("rope_type", params.get("type")) or "default"


def head_dim(raw: dict) -> int:
    return get(raw, "head_dim", default=raw["hidden_size"] // raw["num_attention_heads"])


def key_value_heads(raw: dict) -> int | None:
    """n_key_value_heads: None when every query head has its own key/value head (plain multi-head attention)."""
    g = get(raw, "num_key_value_heads", default=raw["num_attention_heads"])
    return None if g == raw["num_attention_heads"] else g


def layer_types(raw: dict) -> list[str]:
    """Each layer's attention, "full_attention" or "sliding_attention": ``layer_types`` (5.x), else as transformers
    derives it (Qwen 2's use_sliding_window from max_window_layers on; Gemma 2 alternates, sliding first)."""
    n = raw["num_hidden_layers"]
    if raw.get("layer_types"):
        return list(raw["layer_types"])
    pattern = get(raw, "sliding_window_pattern", "_sliding_window_pattern",
                  default=2 if raw.get("model_type") == "gemma2" else None)
    if pattern is not None:  # Gemma 2 (every other layer) and 3 (five in six) slide, starting with the first
        return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n)]
    if "use_sliding_window" in raw:  # Qwen 2 / 3
        sliding = raw["use_sliding_window"] and raw.get("sliding_window") is not None
        start = get(raw, "max_window_layers", default=n)
        return ["sliding_attention" if sliding and i >= start else "full_attention" for i in range(n)]
    sliding = raw.get("sliding_window") is not None  # Mistral: every layer
    return ["sliding_attention" if sliding else "full_attention"] * n


def sliding_window(raw: dict) -> dict:
    """use_local_attn, window_size and attn_types of a config whose layers may slide."""
    types = layer_types(raw)
    if "sliding_attention" not in types:
        return {}
    return dict(use_local_attn=True, window_size=int(raw["sliding_window"]),
                attn_types=["local" if t == "sliding_attention" else "global" for t in types])


def common(raw: dict, name: str, architecture: str, **fields) -> dict:
    """The fields every Llama-like decoder shares (sizes, RMSNorm, rotary, gated MLP)."""
    config = dict(n_layers=raw["num_hidden_layers"], d_model=raw["hidden_size"], n_heads=raw["num_attention_heads"],
                  d_head=head_dim(raw), d_mlp=raw["intermediate_size"], d_vocab=raw["vocab_size"],
                  n_ctx=get(raw, "max_position_embeddings", default=2048), eps=get(raw, "rms_norm_eps", default=1e-6),
                  act_fn=get(raw, "hidden_act", default="silu"), normalization_type="RMS", gated_mlp=True,
                  n_key_value_heads=key_value_heads(raw), original_architecture=architecture, model_name=name,
                  tokenizer_name=None, device="cpu", **rope(raw))
    config.update(fields)
    return config


# ================================================================================================
# The tensors: one at a time
# ================================================================================================


@dataclass(frozen=True)
class Layout:
    """How a family names its tensors and what they become.

    prefix: the decoder's prefix in a ...ForCausalLM state dict ("model.", "gpt_neox."), removed first.
    norms: each layer's norm (transformers' name) -> its classic module (ln1, ln2, ln1_post, ln2_post).
    norm_plus_one: Gemma's norms multiply by (1 + weight): w = 1 + weight. embed_scale: Gemma multiplies the
    embeddings by sqrt(d_model): folded into W_E. q_bias / o_bias: which attention projections have biases.
    qk_norm: "per_head" (Qwen 3: d_head) or "all_heads" (OLMo 2: n_heads d_head), None without.
    """

    prefix: str = "model."
    norms: dict = field(default_factory=lambda: {"input_layernorm": "ln1", "post_attention_layernorm": "ln2"})
    final_norm: str = "norm"
    embed: str = "embed_tokens"
    unembed: str = "lm_head"
    norm_plus_one: bool = False
    embed_scale: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: str | None = None
    tied: bool = False


def attention_bias_layout(raw: dict) -> dict:
    """Llama's and OLMo 2's ``attention_bias``: biases on q, k, v and o (off in the published models)."""
    if raw.get("mlp_bias"):
        raise ValueError("mlp_bias=True (biases on the gated MLP's gate and up projections) is not supported: the "
                         "classic GatedMLP has one bias, b_in, after the product.")
    bias = bool(raw.get("attention_bias", False))
    return dict(qkv_bias=bias, o_bias=bias)


def hf_shapes(raw: dict, layout: Layout, cfg) -> dict[str, tuple[int, ...]]:
    """The decoder tensors (names without the prefix; lm_head with it) a checkpoint must have, and their shapes."""
    d, h, e, m, v = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab
    g = cfg.n_key_value_heads or h
    shapes = {f"{layout.embed}.weight": (v, d), f"{layout.final_norm}.weight": (d,)}
    if not layout.tied:
        shapes[f"{layout.unembed}.weight"] = (v, d)
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        shapes.update({p + f"{norm}.weight": (d,) for norm in layout.norms})
        for x, n in (("q", h), ("k", g), ("v", g)):
            shapes[p + f"self_attn.{x}_proj.weight"] = (n * e, d)
            if layout.qkv_bias:
                shapes[p + f"self_attn.{x}_proj.bias"] = (n * e,)
        shapes[p + "self_attn.o_proj.weight"] = (d, h * e)
        if layout.o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (d,)
        if layout.qk_norm:
            per_head = layout.qk_norm == "per_head"
            shapes[p + "self_attn.q_norm.weight"] = (e if per_head else h * e,)
            shapes[p + "self_attn.k_norm.weight"] = (e if per_head else g * e,)
        shapes.update({p + "mlp.gate_proj.weight": (m, d), p + "mlp.up_proj.weight": (m, d),
                       p + "mlp.down_proj.weight": (d, m)})
    return shapes


def strip(name: str, layout: Layout) -> str:
    return name.removeprefix(layout.prefix)


_LAYER = re.compile(r"layers\.(\d+)\.(.+)")


def convert_tensor(name: str, t: torch.Tensor, layout: Layout, cfg) -> dict[str, torch.Tensor]:
    """The classic tensors made from one transformers tensor (``name`` without the prefix); {} for one to ignore."""
    h, g = cfg.n_heads, cfg.n_key_value_heads or cfg.n_heads
    kv = "_" if cfg.n_key_value_heads is not None else ""  # grouped-query attention stores _W_K, _W_V, _b_K, _b_V
    norm = (lambda w: 1.0 + w) if layout.norm_plus_one else (lambda w: w)
    if name == f"{layout.embed}.weight":
        out = {"embed.W_E": t * torch.tensor(cfg.d_model ** 0.5, dtype=t.dtype) if layout.embed_scale else t}
        if layout.tied:
            out["unembed.W_U"] = t.T.contiguous()
        return out
    if name == f"{layout.unembed}.weight":
        return {"unembed.W_U": t.T.contiguous()}
    if name == f"{layout.final_norm}.weight":
        return {"ln_final.w": norm(t)}
    match = _LAYER.fullmatch(name)
    if match is None:
        return {}
    b, rest = f"blocks.{match.group(1)}.", match.group(2)
    module, _, kind = rest.rpartition(".")
    if module in layout.norms and kind == "weight":
        return {b + f"{layout.norms[module]}.w": norm(t)}
    projections = {"self_attn.q_proj": ("W_Q", "b_Q", h), "self_attn.k_proj": (kv + "W_K", kv + "b_K", g),
                   "self_attn.v_proj": (kv + "W_V", kv + "b_V", g)}
    if module in projections:
        W, bias, n = projections[module]
        if kind == "weight":
            return {b + f"attn.{W}": einops.rearrange(t, "(h e) d -> h d e", h=n)}
        return {b + f"attn.{bias}": einops.rearrange(t, "(h e) -> h e", h=n)}
    if module == "self_attn.o_proj":
        if kind == "weight":
            return {b + "attn.W_O": einops.rearrange(t, "d (h e) -> h e d", h=h)}
        return {b + "attn.b_O": t}
    if module in ("self_attn.q_norm", "self_attn.k_norm"):
        return {b + f"attn.{module[-6:]}.w": norm(t)}
    mlp = {"mlp.gate_proj": "W_gate", "mlp.up_proj": "W_in", "mlp.down_proj": "W_out"}
    if module in mlp and kind == "weight":
        return {b + f"mlp.{mlp[module]}": t.T.contiguous()}
    return {}


def finish(sd: dict[str, torch.Tensor], cfg, dtype: torch.dtype, parts) -> dict[str, torch.Tensor]:
    """The classic tensors a checkpoint leaves out, zero biases where the family has none, for ``parts``: block
    indices, and None for the tensors outside the blocks (the unembedding's bias)."""
    h, e, d, g = cfg.n_heads, cfg.d_head, cfg.d_model, cfg.n_key_value_heads or cfg.n_heads
    kv = "_" if cfg.n_key_value_heads is not None else ""
    zeros = {}
    for part in parts:
        if part is None:
            zeros["unembed.b_U"] = (cfg.d_vocab_out,)
            continue
        b = f"blocks.{part}."
        zeros.update({b + "attn.b_Q": (h, e), b + f"attn.{kv}b_K": (g, e), b + f"attn.{kv}b_V": (g, e),
                      b + "attn.b_O": (d,)})
        if not cfg.attn_only:
            zeros.update({b + "mlp.b_in": (cfg.d_mlp,), b + "mlp.b_out": (d,)})
    for key, shape in zeros.items():
        if key not in sd:
            sd[key] = torch.zeros(shape, dtype=dtype)
    return sd


def check_sizes(config: dict) -> None:
    """Sizes a HookedTransformer can take (a clear error for a config.json that is not)."""
    for key in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab"):
        if not (isinstance(config.get(key), int) and config[key] > 0):
            raise ValueError(f"{key}={config.get(key)!r} in the config is not a positive integer.")
    if not math.isfinite(config.get("rotary_base", 1.0)):
        raise ValueError("rope_theta is not finite.")
