"""A GPT-2-style decoder with a hook point on every activation, read top to bottom.

Every ``hook_*`` attribute is a ``HookPoint``; its name in the model is its path, e.g.
``blocks.0.attn.hook_pattern``, the name ``run_with_cache`` stores it under.

    tokens -> hook_embed + hook_pos_embed -> blocks.0.hook_resid_pre
      block: resid_pre -> ln1 -> attn -> hook_attn_out; resid_mid = resid_pre + attn_out
             resid_mid -> ln2 -> mlp  -> hook_mlp_out;  resid_post = resid_mid + mlp_out
    -> ln_final -> unembed -> logits

Shapes are named batch, pos (sequence position), d_model (residual stream), head, d_head, d_mlp,
d_vocab. The einsums use one letter each: b batch, p pos, d d_model, h head, e d_head, and in
attention q / k for the destination (query) and source (key) positions (helpers.weights adds
m d_mlp and v d_vocab).

The components come in the order of the forward pass; the configuration is in helpers.config. Its options
change a component each: ``n_key_value_heads`` (GroupedQueryAttention), ``gated_mlp`` (GatedMLP),
``attention_dir="bidirectional"`` (no causal mask), ``positional_embedding_type="shortformer"`` (the positions
go to the queries' and keys' inputs, not to the residual stream), ``normalization_type="LNPre"`` (LayerNormPre).
The families beyond GPT-2 (Llama, Qwen, Mistral, Gemma, Pythia, OLMo) add: ``normalization_type="RMS"`` /
``"RMSPre"`` (RMSNorm, RMSNormPre), ``positional_embedding_type="rotary"`` (q and k rotated in attention, through
``hook_rot_q`` / ``hook_rot_k``; no W_pos), ``use_qk_norm`` (attn.q_norm, attn.k_norm), ``parallel_attn_mlp``
(attention and MLP both read resid_pre), ``use_normalization_before_and_after`` / ``use_normalization_after_only``
(ln1_post, ln2_post inside hook_attn_out / hook_mlp_out), soft-capped scores and logits, sliding windows.
"""

from __future__ import annotations

import math
from operator import attrgetter

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn
from tqdm.auto import tqdm

from helpers import big_models, checks, utils, weights
from helpers.activation_cache import ActivationCache
from helpers.config import ACTIVATIONS, HookedTransformerConfig
from helpers.factored_matrix import FactoredMatrix
from helpers.hook_points import HookedRootModule, HookPoint
from helpers.past_key_value_caching import HookedTransformerKeyValueCache
from helpers.tokenizer import gpt2_tokenizer

Resid = Float[torch.Tensor, "batch pos d_model"]  # the residual stream, or what is added to it


def affine(x: Float[torch.Tensor, "... d_in"], W: Float[torch.Tensor, "d_in d_out"],
           b: Float[torch.Tensor, " d_out"]) -> Float[torch.Tensor, "... d_out"]:
    """``x @ W + b`` in one call (torch.addmm): the bias is added as the product is written, which saves
    a pass over the output (for the logits, [batch pos d_vocab], that pass is not small)."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), W).view(*x.shape[:-1], -1)


def hooked(*points: HookPoint) -> bool:
    """Whether a hook will run on any of these points (``HookPoint.is_hooked``: added with add_hook, or
    registered with PyTorch's register_forward_hook). When none will, attention skips the scores and the
    pattern: no hook could see them. Either way it computes z with PyTorch's fused kernel unless a hook may
    change the scores or the pattern (``HookPoint.only_read``), so that ``model(x)`` and ``run_with_cache(x)``
    give the same bits."""
    return any(point.is_hooked() for point in points)


def spread_non_finite(z: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      causal: bool = True) -> torch.Tensor:
    """z [batch pos head d_head] with NaN wherever a non-finite q, k or v reaches it in the explicit softmax
    path: a query spoils its own row, a key the rows that read it (from its position on, if ``causal``; else
    all), a value its component of every row (0 * inf in pattern @ v). The fused kernel drops some of these (a
    NaN query can give a finite row), so both paths pass z through here and agree; finite entries are
    unchanged."""
    keys = k.sum(-1, keepdim=True, dtype=torch.float32)
    # With a key/value cache the queries are the last q.shape[1] of the k.shape[1] positions.
    past = keys.cumsum(1)[:, k.shape[1] - q.shape[1]:] if causal else keys.sum(1, keepdim=True)
    rows = q.sum(-1, keepdim=True, dtype=torch.float32) + past
    return z + (rows * 0).to(z.dtype) + (v.sum(1, keepdim=True, dtype=torch.float32) * 0).to(z.dtype)


def rotary_tables(cfg: HookedTransformerConfig, n: int, attn_type: str = "global") -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [n rotary_dim] (float32) of the rotary angles, position p times each frequency, computed as
    transformers computes them (its default, "linear" and "llama3" rope types). Gemma 3's local layers have their
    own theta (rotary_base_local) and no linear scaling (rotary_scaling_factor: its global layers only)."""
    r = cfg.rotary_dim
    local = attn_type == "local"
    base = cfg.rotary_base_local if local and cfg.rotary_base_local is not None else cfg.rotary_base
    inv_freq = 1.0 / (base ** (torch.arange(0, r, 2, dtype=torch.int64).float() / r))
    if not local:  # positions slowed down by the factor (Gemma 3 4B and up)
        inv_freq = inv_freq / cfg.rotary_scaling_factor
    if cfg.use_NTK_by_parts_rope:  # Llama 3: long wavelengths slowed by factor, a smooth ramp between
        factor, low, high = cfg.NTK_by_parts_factor, cfg.NTK_by_parts_low_freq_factor, cfg.NTK_by_parts_high_freq_factor
        old = cfg.NTK_original_ctx_len
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) * ~(wavelen > old / low)
        inv_freq = torch.where(medium, smoothed, scaled)
    angles = torch.arange(n, dtype=torch.float32)[:, None] * inv_freq[None, :]  # [n r/2]
    angles = angles.repeat_interleave(2, dim=-1) if cfg.rotary_adjacent_pairs else torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


# ================================================================================================
# Components
# ================================================================================================


def affine_parameters(cfg: HookedTransformerConfig, d_in: int, d_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    """The weight [d_in d_out] (uninitialised: loading or init_weights fills it) and the bias [d_out] (zeros) of
    an affine map x @ W + b."""
    return (nn.Parameter(torch.empty(d_in, d_out, dtype=cfg.dtype)),
            nn.Parameter(torch.zeros(d_out, dtype=cfg.dtype)))


class Embed(nn.Module):
    """Token embedding: row ``tokens`` of W_E [d_vocab d_model]."""

    def __init__(self, cfg: HookedTransformerConfig | dict):
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: Int[torch.Tensor, "batch pos"]) -> Resid:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    """Learned positional embedding: the first pos rows of W_pos [n_ctx d_model], one copy per sequence."""

    def __init__(self, cfg: HookedTransformerConfig | dict):
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model, dtype=cfg.dtype))

    def forward(self, tokens: Int[torch.Tensor, "batch pos"], past_kv_pos_offset: int = 0) -> Resid:
        """The positions of tokens [batch pos]; with a key/value cache, positions ``past_kv_pos_offset`` onwards."""
        n_pos = tokens.shape[-1] + past_kv_pos_offset
        if n_pos > self.W_pos.shape[0]:
            raise ValueError(f"Input has {n_pos} tokens but the model's context is {self.W_pos.shape[0]}.")
        # A copy, not a view of W_pos: hooks may edit hook_pos_embed in place.
        return self.W_pos[past_kv_pos_offset:n_pos].repeat(tokens.shape[0], 1, 1)


class RMSNormPre(nn.Module):
    """RMSNorm without weight (``RMSPre``: what folding the weights into the next layer leaves): divide by the root
    mean square, with no centring. The scale and the normalised input are hook points."""

    def __init__(self, cfg: HookedTransformerConfig | dict, length: int | None = None):
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.eps = cfg.eps
        self.hook_scale = HookPoint()  # [batch pos (head) 1]
        self.hook_normalized = HookPoint()  # [batch pos (head) length]

    def forward(self, x: Float[torch.Tensor, "... length"]) -> Float[torch.Tensor, "... length"]:
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale)


class LayerNormPre(RMSNormPre):
    """LayerNorm without weight or bias (``LNPre``: what folding the weights into the next layer leaves): centre,
    then divide by the scale as RMSNormPre does. The scale and the normalised input are hook points."""

    def forward(self, x: Float[torch.Tensor, "... length"]) -> Float[torch.Tensor, "... length"]:
        # hook_normalized: mean 0 and norm sqrt(length), before any learned weight and bias (the classic meaning).
        return super().forward(x - x.mean(-1, keepdim=True))


class LayerNorm(LayerNormPre):
    """LayerNorm (``LN``): LayerNormPre's output times the weight ``w`` plus the bias ``b``, [length] each
    (length: d_model unless given)."""

    def __init__(self, cfg: HookedTransformerConfig | dict, length: int | None = None):
        super().__init__(cfg)
        cfg = HookedTransformerConfig.unwrap(cfg)
        length = cfg.d_model if length is None else length
        self.w = nn.Parameter(torch.ones(length, dtype=cfg.dtype))
        self.b = nn.Parameter(torch.zeros(length, dtype=cfg.dtype))

    def forward(self, x: Float[torch.Tensor, "... length"]) -> Float[torch.Tensor, "... length"]:
        return super().forward(x) * self.w + self.b


class RMSNorm(RMSNormPre):
    """RMSNorm (``RMS``, Llama's): RMSNormPre's output times the weight ``w`` [length]. Gemma's norms multiply by
    (1 + weight): its conversion stores w = 1 + weight."""

    def __init__(self, cfg: HookedTransformerConfig | dict, length: int | None = None):
        super().__init__(cfg)
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.w = nn.Parameter(torch.ones(cfg.d_model if length is None else length, dtype=cfg.dtype))

    def forward(self, x: Float[torch.Tensor, "... length"]) -> Float[torch.Tensor, "... length"]:
        return super().forward(x) * self.w


_NORMS = {"LN": LayerNorm, "LNPre": LayerNormPre, "RMS": RMSNorm, "RMSPre": RMSNormPre}


def make_norm(cfg: HookedTransformerConfig, length: int) -> nn.Module:
    if cfg.normalization_type is None:
        return nn.Identity()
    norm = _NORMS[cfg.normalization_type]
    return norm(cfg, length) if norm in (LayerNorm, RMSNorm) else norm(cfg)


def make_post_norm(cfg: HookedTransformerConfig) -> nn.Module:
    """A norm on attn_out or mlp_out (ln1_post, ln2_post: Gemma 2, OLMo 2), always with its weight: it writes to the
    residual stream, so folding cannot remove it."""
    if cfg.normalization_type is None:
        return nn.Identity()
    return RMSNorm(cfg) if cfg.normalization_type.startswith("RMS") else LayerNorm(cfg)


def _past_length(past_kv_cache_entry) -> int:
    """The number of positions a layer's key/value cache holds (0 without one): the new positions come after."""
    return 0 if past_kv_cache_entry is None else past_kv_cache_entry.past_keys.shape[1]


class Attention(nn.Module):
    """Multi-head attention, each head with its own query, key and value (see GroupedQueryAttention).

    Options of the config (the families beyond GPT-2): rotary positions (q and k rotated after hook_q / hook_k,
    through hook_rot_q / hook_rot_k), RMSNorms q_norm / k_norm before the rotation (use_qk_norm), scores soft-capped
    (attn_scores_soft_cap), a sliding window (``attn_type="local"``: window_size positions, itself included).
    """

    grouped = False  # True: fewer key/value heads than query heads, stored as _W_K, _W_V, _b_K, _b_V

    def __init__(self, cfg: HookedTransformerConfig | dict, attn_type: str = "global", layer_id: int | None = None):
        super().__init__()
        self.cfg = cfg = HookedTransformerConfig.unwrap(cfg)
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        kv, g = ("_", cfg.n_key_value_heads) if self.grouped else ("", h)  # the stored key/value heads
        self.W_Q = nn.Parameter(torch.empty(h, d, e, dtype=cfg.dtype))
        self.register_parameter(kv + "W_K", nn.Parameter(torch.empty(g, d, e, dtype=cfg.dtype)))
        self.register_parameter(kv + "W_V", nn.Parameter(torch.empty(g, d, e, dtype=cfg.dtype)))
        self.W_O = nn.Parameter(torch.empty(h, e, d, dtype=cfg.dtype))
        self.b_Q = nn.Parameter(torch.zeros(h, e, dtype=cfg.dtype))
        self.register_parameter(kv + "b_K", nn.Parameter(torch.zeros(g, e, dtype=cfg.dtype)))
        self.register_parameter(kv + "b_V", nn.Parameter(torch.zeros(g, e, dtype=cfg.dtype)))
        self.b_O = nn.Parameter(torch.zeros(d, dtype=cfg.dtype))
        self.attn_scale = cfg.attn_scale if cfg.use_attn_scale else 1.0
        self.is_causal = cfg.attention_dir == "causal"
        if attn_type not in ("global", "local"):
            raise ValueError(f"attn_type must be 'global' or 'local', got {attn_type!r}.")
        self.attn_type, self.layer_id = attn_type, layer_id
        self.window = cfg.window_size if attn_type == "local" else None  # sliding window: positions read
        # Grown on demand (_causal_mask): a 131072-token context (Llama 3.2) would need 17 GB at once.
        self.register_buffer("mask", self._make_mask(min(cfg.n_ctx, 1024)), persistent=False)
        if cfg.positional_embedding_type == "rotary":
            self.hook_rot_q = HookPoint()  # [batch pos head d_head], q after the rotation
            self.hook_rot_k = HookPoint()  # [batch pos kv_head d_head] (head when not grouped)
            cos, sin = rotary_tables(cfg, min(cfg.n_ctx, 1024), attn_type)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        if cfg.use_qk_norm:  # per head (Qwen 3) or over all heads at once (OLMo 2)
            self.q_norm = RMSNorm(cfg, e if cfg.qk_norm_per_head else h * e)
            self.k_norm = RMSNorm(cfg, e if cfg.qk_norm_per_head else g * e)

        self.hook_q = HookPoint()  # [batch pos head d_head]
        self.hook_k = HookPoint()  # [batch pos head d_head] ([batch pos kv_head d_head] when grouped)
        self.hook_v = HookPoint()  # [batch pos head d_head] ([batch pos kv_head d_head] when grouped)
        self.hook_attn_scores = HookPoint()  # [batch head dest src]
        self.hook_pattern = HookPoint()  # [batch head dest src]
        self.hook_z = HookPoint()  # [batch pos head d_head]
        self.hook_result = HookPoint()  # [batch pos head d_model], only if cfg.use_attn_result

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Accept TransformerLens' saved state dicts: they carry the causal mask and IGNORE as buffers, which
        here are rebuilt from the config (the mask) or not needed (IGNORE). Their values are not read."""
        for name in ("mask", "IGNORE"):
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----- the families beyond GPT-2: the mask, the rotation, the q/k norms ------------------------------------

    def _make_mask(self, n: int) -> torch.Tensor:
        """[n n] bool, True where a query (row) may read a key (column): the past, within the window if local."""
        mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
        return mask if self.window is None else mask & torch.triu(mask, diagonal=1 - self.window)

    def _causal_mask(self, n: int) -> torch.Tensor:
        if n > self.mask.shape[0]:
            self.mask = self._make_mask(max(n, 2 * self.mask.shape[0])).to(self.mask.device)
        return self.mask[:n, :n]

    def apply_rotary(self, x: Float[torch.Tensor, "batch pos head d_head"],
                     offset: int = 0) -> Float[torch.Tensor, "batch pos head d_head"]:
        """x with its first rotary_dim dimensions of each head rotated by the position (``offset`` + 0, 1, ...)."""
        n, r = x.shape[1], self.cfg.rotary_dim
        if offset + n > self.rotary_cos.shape[0]:
            cos, sin = rotary_tables(self.cfg, max(offset + n, 2 * self.rotary_cos.shape[0]), self.attn_type)
            self.rotary_cos, self.rotary_sin = cos.to(self.rotary_cos.device), sin.to(self.rotary_sin.device)
        cos = self.rotary_cos[offset:offset + n, None, :].to(x.dtype)
        sin = self.rotary_sin[offset:offset + n, None, :].to(x.dtype)
        x_rot = x[..., :r]
        if self.cfg.rotary_adjacent_pairs:  # GPT-J: (x0, x1) -> (-x1, x0) for each adjacent pair
            flipped = torch.stack((-x_rot[..., 1::2], x_rot[..., ::2]), dim=-1).flatten(-2)
        else:  # Llama, NeoX: dimension i pairs with i + r/2
            flipped = torch.cat((-x_rot[..., r // 2:], x_rot[..., :r // 2]), dim=-1)
        rotated = x_rot * cos + flipped * sin
        return rotated if r == x.shape[-1] else torch.cat((rotated, x[..., r:]), dim=-1)

    def _qk_norm_and_rotary(self, x: torch.Tensor, norm: str, hook: str, offset: int = 0) -> torch.Tensor:
        """q or k [batch pos head d_head] after hook_q / hook_k: its norm (q_norm / k_norm, use_qk_norm), then its
        rotation to positions ``offset`` + 0, 1, ... through hook_rot_q / hook_rot_k. The identity for the classic
        models."""
        if self.cfg.use_qk_norm:
            x = getattr(self, norm)(x) if self.cfg.qk_norm_per_head else getattr(self, norm)(x.flatten(-2)).view(
                x.shape)
        if self.cfg.positional_embedding_type == "rotary":
            x = getattr(self, hook)(self.apply_rotary(x, offset))
        return x

    @staticmethod
    def _project(x: torch.Tensor, W: torch.Tensor,
                 b: torch.Tensor) -> Float[torch.Tensor, "batch pos head d_head"]:
        """x is [batch pos d_model], or [batch pos head d_model] when each head has its own input."""
        if x.ndim == 3 and x.shape[1] == 1:
            # One position (a step of generation with a key/value cache): one product per head reads W in place,
            # where the einsum would first copy it to [d_model head*d_head], which takes as long as the product.
            return (x.reshape(1, -1, x.shape[-1]) @ W).transpose(0, 1).reshape(*x.shape[:2], *b.shape) + b
        if x.ndim == 3:
            return torch.einsum("bpd,hde->bphe", x, W) + b
        return torch.einsum("bphd,hde->bphe", x, W) + b

    def _keys_and_values(self, key_input: torch.Tensor, value_input: torch.Tensor,
                         past_kv_cache_entry=None) -> tuple[torch.Tensor, torch.Tensor]:
        """k and v [batch pos head d_head], through hook_k and hook_v (k rotated to the positions after the cached
        ones), then after the cached ones, if any."""
        k = self._qk_norm_and_rotary(self.hook_k(self._project(key_input, self.W_K, self.b_K)), "k_norm",
                                     "hook_rot_k", _past_length(past_kv_cache_entry))
        v = self.hook_v(self._project(value_input, self.W_V, self.b_V))
        return (k, v) if past_kv_cache_entry is None else past_kv_cache_entry.append(k, v)

    def forward(self, query_input: torch.Tensor, key_input: torch.Tensor,
                value_input: torch.Tensor, past_kv_cache_entry=None) -> Resid:
        """``past_kv_cache_entry`` (helpers.past_key_value_caching): the inputs are the new positions; the cached
        keys and values come before theirs, and each new position reads them. ``query_input`` may hold only the
        last positions of ``key_input`` (then so do z and the output)."""
        q = self.hook_q(self._project(query_input, self.W_Q, self.b_Q))
        # The queries are the last positions: fewer than the keys' with TransformerBlock's last_positions.
        q_offset = _past_length(past_kv_cache_entry) + key_input.shape[1] - query_input.shape[1]
        q = self._qk_norm_and_rotary(q, "q_norm", "hook_rot_q", q_offset)
        k, v = self._keys_and_values(key_input, value_input, past_kv_cache_entry)

        pattern = None
        soft_cap = self.cfg.attn_scores_soft_cap  # > 0: no fused kernel takes it, the scores are computed here
        if soft_cap > 0 or hooked(self.hook_attn_scores, self.hook_pattern):
            scores = torch.einsum("bqhe,bkhe->bhqk", q, k).div_(self.attn_scale)  # in place: one [b h q k] buffer
            if soft_cap > 0:
                scores = torch.tanh(scores / soft_cap) * soft_cap
            if self.is_causal:  # the queries are the last positions (all of them without a cache)
                n = scores.shape[-1]
                scores.masked_fill_(~self._causal_mask(n)[n - scores.shape[-2]:], float("-inf"))
            pattern = self.hook_pattern(F.softmax(self.hook_attn_scores(scores), dim=-1))
        if pattern is not None and (soft_cap > 0 or not (self.hook_attn_scores.only_read()
                                                         and self.hook_pattern.only_read())):
            z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)  # a hook may have changed the pattern: z follows it
        else:  # PyTorch's fused attention: the z of an unhooked forward, to the bit, with or without a cache
            n_q, n = q.shape[1], k.shape[1]
            window = self.is_causal and self.window is not None and n > self.window  # the sliding window's mask
            causal, mask = self.is_causal, None
            if window or (causal and n != n_q):  # is_causal would align the queries with the first keys
                causal = False
                mask = self._causal_mask(n)[n - n_q:] if window or n_q > 1 else None  # one query reads every key
            z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                               is_causal=causal, scale=1 / self.attn_scale).transpose(1, 2)
        # On the CPU, checking is cheaper than spreading; elsewhere, spreading does not wait for the device.
        if z.device.type != "cpu" or not torch.isfinite(q.sum(dtype=torch.float32) + k.sum(dtype=torch.float32)
                                                         + v.sum(dtype=torch.float32)):
            z = spread_non_finite(z, q, k, v, causal=self.is_causal)
        z = self.hook_z(z)
        if not self.cfg.use_attn_result:
            return affine(einops.rearrange(z, "b q h e -> b q (h e)"), self.W_O.flatten(0, 1), self.b_O)
        result = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))  # each head's output, apart
        return result.sum(dim=2) + self.b_O


def _per_query_head(name: str) -> property:
    """A read-only property: the grouped parameter ``_<name>`` with each key/value head repeated for the query
    heads of its group ([kv_head ...] -> [head ...])."""
    return property(lambda self: getattr(self, "_" + name).repeat_interleave(self.repeat_kv_heads, dim=0),
                    doc=f"``_{name}`` repeated for each query head of a group: [head ...].")


class GroupedQueryAttention(Attention):
    """Grouped-query attention: ``n_key_value_heads`` key/value heads, each shared by ``repeat_kv_heads =
    n_heads // n_key_value_heads`` consecutive query heads (query head i reads key/value head i // repeat_kv_heads).

    The shared weights are ``_W_K``, ``_W_V`` [kv_head d_model d_head] and ``_b_K``, ``_b_V`` [kv_head d_head];
    ``W_K``, ``W_V``, ``b_K``, ``b_V`` give them per query head. hook_k and hook_v hold the key/value heads;
    they are repeated for the scores and z.
    """

    grouped = True

    def __init__(self, cfg: HookedTransformerConfig | dict, attn_type: str = "global", layer_id: int | None = None):
        cfg = HookedTransformerConfig.unwrap(cfg)
        if cfg.n_key_value_heads is None:
            raise ValueError("GroupedQueryAttention needs cfg.n_key_value_heads (the number of key/value heads).")
        super().__init__(cfg, attn_type, layer_id)
        self.repeat_kv_heads = cfg.n_heads // cfg.n_key_value_heads

    W_K, W_V, b_K, b_V = (_per_query_head(name) for name in ("W_K", "W_V", "b_K", "b_V"))

    def _keys_and_values(self, key_input: torch.Tensor, value_input: torch.Tensor,
                         past_kv_cache_entry=None) -> tuple[torch.Tensor, torch.Tensor]:
        """k and v through hook_k and hook_v with the key/value heads [batch pos kv_head d_head] (then after the
        cached ones), then repeated for the query heads of each group [batch pos head d_head]; with
        cfg.ungroup_grouped_query_attention, repeated first (the hooks see one per query head)."""
        if self.cfg.ungroup_grouped_query_attention:
            return super()._keys_and_values(key_input, value_input, past_kv_cache_entry)
        k = self.hook_k(self._project(key_input, self._W_K, self._b_K))
        k = self._qk_norm_and_rotary(k, "k_norm", "hook_rot_k", _past_length(past_kv_cache_entry))
        v = self.hook_v(self._project(value_input, self._W_V, self._b_V))
        if past_kv_cache_entry is not None:
            k, v = past_kv_cache_entry.append(k, v)
        return k.repeat_interleave(self.repeat_kv_heads, dim=2), v.repeat_interleave(self.repeat_kv_heads, dim=2)


class MLP(nn.Module):
    """mlp_out = act(x @ W_in + b_in) @ W_out + b_out; with act_fn "solu_ln", a LayerNorm after the activation."""

    def __init__(self, cfg: HookedTransformerConfig | dict):
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_in, self.b_in = affine_parameters(cfg, cfg.d_model, cfg.d_mlp)
        self.W_out, self.b_out = affine_parameters(cfg, cfg.d_mlp, cfg.d_model)
        self.act_fn = ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()  # [batch pos d_mlp]
        if cfg.is_layer_norm_activation():
            self.hook_mid = HookPoint()  # [batch pos d_mlp], SoLU before its LayerNorm
            self.ln = LayerNorm(cfg, cfg.d_mlp) if cfg.normalization_type == "LN" else LayerNormPre(cfg)
        self.hook_post = HookPoint()  # [batch pos d_mlp]

    def forward(self, x: Resid) -> Resid:
        pre = self.hook_pre(affine(x, self.W_in, self.b_in))
        if not hasattr(self, "ln"):
            post = self.hook_post(self.act_fn(pre))
        else:  # SoLU: its output is normalised before W_out
            post = self.hook_post(self.ln(self.hook_mid(self.act_fn(pre))))
        return affine(post, self.W_out, self.b_out)


class GatedMLP(MLP):
    """mlp_out = (act(x @ W_gate) * (x @ W_in) + b_in) @ W_out + b_out (Llama's SwiGLU with act_fn "silu").

    hook_pre is the gate before its activation, hook_pre_linear the other branch, hook_post their product.
    With act_fn "solu_ln" the gate's normalised activation is hook_post, and W_in is not used (as in the
    classic library).
    """

    def __init__(self, cfg: HookedTransformerConfig | dict):
        super().__init__(cfg)
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_gate = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp, dtype=cfg.dtype))
        self.hook_pre_linear = HookPoint()  # [batch pos d_mlp]

    def forward(self, x: Resid) -> Resid:
        pre = self.hook_pre(x @ self.W_gate)
        if not hasattr(self, "ln"):
            # act(gate) * linear + b_in in one pass (addcmul)
            post = self.hook_post(torch.addcmul(self.b_in, self.act_fn(pre), self.hook_pre_linear(x @ self.W_in)))
        else:
            post = self.hook_post(self.ln(self.hook_mid(self.act_fn(pre))))
        return affine(post, self.W_out, self.b_out)


class TransformerBlock(nn.Module):
    """resid_pre -> ln1 -> attn -> hook_attn_out, resid_mid -> ln2 -> mlp -> hook_mlp_out -> resid_post.

    Variants of the families beyond GPT-2: attention and MLP in parallel, both reading resid_pre (parallel_attn_mlp,
    GPT-NeoX: no resid_mid); a norm after attention and after the MLP, ln1_post and ln2_post, inside hook_attn_out
    and hook_mlp_out (use_normalization_before_and_after, Gemma 2; with use_normalization_after_only, OLMo 2, there
    is no ln1 or ln2); local (sliding-window) attention in the layers cfg.attn_types marks "local".
    """

    def __init__(self, cfg: HookedTransformerConfig | dict, block_index: int | None = None):
        super().__init__()
        self.cfg = cfg = HookedTransformerConfig.unwrap(cfg)
        self.ln1 = self._pre_norm(cfg)
        attn_type = "global"
        if cfg.use_local_attn:
            attn_type = "local" if cfg.attn_types is None or block_index is None else cfg.attn_types[block_index]
        attention = Attention if cfg.n_key_value_heads is None else GroupedQueryAttention
        self.attn = attention(cfg, attn_type, block_index)
        post = cfg.use_normalization_before_and_after or cfg.use_normalization_after_only
        if post:
            self.ln1_post = make_post_norm(cfg)
        if not cfg.attn_only:
            self.ln2 = self._pre_norm(cfg)
            if post:
                self.ln2_post = make_post_norm(cfg)
            self.mlp = GatedMLP(cfg) if cfg.gated_mlp else MLP(cfg)
        self.hook_resid_pre = HookPoint()  # [batch pos d_model]
        self.hook_q_input = HookPoint()  # [batch pos head d_model], if cfg.use_split_qkv_input
        self.hook_k_input = HookPoint()  # [batch pos head d_model] ([batch pos kv_head d_model] when grouped)
        self.hook_v_input = HookPoint()
        self.hook_attn_in = HookPoint()  # [batch pos head d_model], if cfg.use_attn_in
        self.hook_attn_out = HookPoint()  # [batch pos d_model]
        if not cfg.attn_only and not cfg.parallel_attn_mlp:
            self.hook_resid_mid = HookPoint()  # [batch pos d_model]
        self.hook_mlp_in = HookPoint()  # [batch pos d_model], if cfg.use_hook_mlp_in
        self.hook_mlp_out = HookPoint()  # [batch pos d_model]
        self.hook_resid_post = HookPoint()  # [batch pos d_model]

    def forward(self, resid_pre: Resid, shortformer_pos_embed: Resid | None = None,
                past_kv_cache_entry=None, last_positions: int | None = None) -> Resid:
        """``shortformer_pos_embed``: the positions a "shortformer" model adds to the queries' and keys' inputs;
        ``past_kv_cache_entry``: this layer's key/value cache (see Attention.forward); ``last_positions``: the
        keys and values of every position, the rest (queries, attention output, MLP) of the last
        ``last_positions`` only, and the output [batch last_positions d_model]."""
        resid_pre = self.hook_resid_pre(resid_pre)
        q_in, k_in, v_in = self._attn_inputs(resid_pre, shortformer_pos_embed)
        if last_positions is not None:
            q_in, resid_pre = q_in[:, -last_positions:], resid_pre[:, -last_positions:]
        attn_out = self.attn(q_in, k_in, v_in, past_kv_cache_entry=past_kv_cache_entry)
        if hasattr(self, "ln1_post"):
            attn_out = self.ln1_post(attn_out)
        attn_out = self.hook_attn_out(attn_out)
        if self.cfg.attn_only:
            return self.hook_resid_post(resid_pre + attn_out)
        if self.cfg.parallel_attn_mlp or hasattr(self, "ln2_post"):
            return self._other_mlp(resid_pre, attn_out)

        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_in = self.hook_mlp_in(resid_mid.clone()) if self.cfg.use_hook_mlp_in else resid_mid
        mlp_out = self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid_mid + mlp_out)

    @staticmethod
    def _pre_norm(cfg: HookedTransformerConfig) -> nn.Module:
        return nn.Identity() if cfg.use_normalization_after_only else make_norm(cfg, cfg.d_model)

    def _other_mlp(self, resid_pre: Resid, attn_out: Resid) -> Resid:
        """The MLP of a parallel block (it reads resid_pre: resid_post = resid_pre + attn_out + mlp_out), or of a
        block with ln2_post (inside hook_mlp_out)."""
        parallel = self.cfg.parallel_attn_mlp
        resid = resid_pre if parallel else self.hook_resid_mid(resid_pre + attn_out)
        mlp_in = self.hook_mlp_in(resid.clone()) if self.cfg.use_hook_mlp_in else resid
        mlp_out = self.mlp(self.ln2(mlp_in))
        if hasattr(self, "ln2_post"):
            mlp_out = self.ln2_post(mlp_out)
        mlp_out = self.hook_mlp_out(mlp_out)
        return self.hook_resid_post(resid_pre + attn_out + mlp_out if parallel else resid + mlp_out)

    def _attn_inputs(self, resid_pre: Resid,
                     pos_embed: Resid | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The query, key and value inputs: ln1 of the residual stream, the same tensor for all three, plus
        ``pos_embed`` (if given) for the query and key inputs.

        With use_split_qkv_input (or use_attn_in), each is one copy of the stream per head
        [batch pos head d_model] (the key and value inputs one per key/value head when grouped), through its own
        hook (or one hook shared by the three).
        """
        cfg = self.cfg
        if not (cfg.use_split_qkv_input or cfg.use_attn_in):
            q_in = k_in = v_in = self.ln1(resid_pre)
        else:
            def per_head(n_heads: int) -> torch.Tensor:  # a copy (not an expanded view): hooks may edit it in place
                return einops.repeat(resid_pre, "b p d -> b p h d", h=n_heads).clone()

            if cfg.use_split_qkv_input:
                grouped = cfg.n_key_value_heads is not None and not cfg.ungroup_grouped_query_attention
                kv_heads = cfg.n_key_value_heads if grouped else cfg.n_heads
                q_in = self.hook_q_input(per_head(cfg.n_heads))
                k_in = self.hook_k_input(per_head(kv_heads))
                v_in = self.hook_v_input(per_head(kv_heads))
            else:
                q_in = k_in = v_in = self.hook_attn_in(per_head(cfg.n_heads))
            q_in, k_in, v_in = self.ln1(q_in), self.ln1(k_in), self.ln1(v_in)
            pos_embed = None if pos_embed is None else pos_embed[:, :, None]  # the same for every head
        if pos_embed is None:
            return q_in, k_in, v_in
        return q_in + pos_embed, k_in + pos_embed, v_in


class Unembed(nn.Module):
    """Logits [batch pos d_vocab_out] = x @ W_U + b_U."""

    #: From this many positions on, a forward without gradients looks for columns shared by most of the vocabulary.
    SHARED_COLUMNS_MIN_POSITIONS = 256
    #: A loss over more logits than this (256 MB in float32) computes them a few sequences at a time.
    LOSS_MAX_LOGITS = 2**26

    def __init__(self, cfg: HookedTransformerConfig | dict):
        super().__init__()
        cfg = HookedTransformerConfig.unwrap(cfg)
        self.W_U, self.b_U = affine_parameters(cfg, cfg.d_model, cfg.d_vocab_out)
        self._shared = None  # ((W_U, b_U) storage addresses, _find_shared_columns()'s answer for them)

    def forward(self, x: Resid) -> Float[torch.Tensor, "batch pos d_vocab"]:
        shared = self._shared_columns_for(x)
        if shared is not None:
            return self._logits_with_shared_columns(x, *shared)
        # A zero bias (every family but GPT-2 has none) without gradient to compute: a plain product, not a pass
        # over [batch pos d_vocab] to write the zeros first (151936 logits per position for Qwen).
        if not (torch.is_grad_enabled() and self.b_U.requires_grad) and not self.b_U.any():
            return x @ self.W_U
        return affine(x, self.W_U, self.b_U)

    def loss(self, x: Resid, tokens: Int[torch.Tensor, "batch pos"], per_token: bool = False) -> torch.Tensor:
        """utils.lm_cross_entropy_loss of these logits: the mean next-token cross-entropy, or [batch pos-1] if
        ``per_token``. With shared columns (see below), without the logits [batch pos d_vocab]: the shared tokens'
        log-sum-exp is their common logit plus log(their number), so only the other columns are computed.
        Otherwise, above LOSS_MAX_LOGITS logits, a few sequences at a time: the logits and their log-softmax
        (two copies) of GPT-2 on 100 sequences of 94 tokens would take 3.8 GB at once."""
        shared = self._shared_columns_for(x)
        if shared is None:
            sequences = max(1, self.LOSS_MAX_LOGITS // (x.shape[1] * self.W_U.shape[-1]))
            losses = [utils.lm_cross_entropy_loss(self(part), part_tokens, per_token=True)
                      for part, part_tokens in zip(x.split(sequences), tokens.split(sequences), strict=True)]
            loss = torch.cat(losses)  # [batch pos-1]
            return loss if per_token else loss.mean()
        shared, one, others = shared
        x = x[:, :-1]  # the last position predicts no token of the sequence
        dtype = torch.promote_types(x.dtype, torch.float32)  # half precision upcast, as lm_cross_entropy_loss does
        one_logit = (x @ self.W_U[:, one] + self.b_U[one]).to(dtype)  # [batch pos-1]
        other_logits = affine(x, self.W_U[:, others], self.b_U[others]).to(dtype)  # [batch pos-1 others]
        log_normalizer = torch.logaddexp(other_logits.logsumexp(-1), one_logit + math.log(len(shared)))
        column = torch.full_like(self.b_U, -1, dtype=torch.long)  # each token's column among others, -1 if shared
        column[others] = torch.arange(len(others), device=column.device)
        target = column[tokens[:, 1:].to(column.device)]
        target_logit = other_logits.gather(-1, target.clamp(min=0)[..., None])[..., 0].where(target >= 0, one_logit)
        loss = log_normalizer - target_logit
        return loss if per_token else loss.mean()

    def _shared_columns_for(self, x: Resid) -> tuple[torch.Tensor, int, torch.Tensor] | None:
        """_shared_columns() when they are worth using for ``x``: from SHARED_COLUMNS_MIN_POSITIONS positions on,
        with no gradient to compute; None otherwise."""
        no_grad = not (torch.is_grad_enabled() and (self.W_U.requires_grad or self.b_U.requires_grad))
        if no_grad and x[..., 0].numel() >= self.SHARED_COLUMNS_MIN_POSITIONS:
            return self._shared_columns()
        return None

    def _shared_columns(self) -> tuple[torch.Tensor, int, torch.Tensor] | None:
        """(shared, one, others): the tokens whose W_U column and b_U entry are all equal, one of them, the rest;
        None unless they are at least half the vocabulary. The embedded course models have 40,281 such tokens of
        50,257 (those their training never saw: zero unembedding, one bias), so their logits cost one product per
        position instead of 40,281. Checked exactly at every call: weights edited in place since are seen."""
        key = (self.W_U.data_ptr(), self.b_U.data_ptr())
        if self._shared is None or self._shared[0] != key:
            self._shared = (key, self._find_shared_columns())
        found = self._shared[1]
        if found is not None:
            shared, one, _ = found
            W_U, b_U = self.W_U, self.b_U
            if not ((W_U[:, shared] == W_U[:, one, None]).all() and (b_U[shared] == b_U[one]).all()):
                self._shared = (key, found := self._find_shared_columns())
        return found

    @torch.no_grad()
    def _find_shared_columns(self) -> tuple[torch.Tensor, int, torch.Tensor] | None:
        W_U, b_U = self.W_U, self.b_U
        if W_U.device.type == "meta":
            return None
        # Equal columns have equal projections: the most frequent projection names the candidates, checked exactly.
        projection = b_U + W_U.T @ torch.randn(W_U.shape[0], generator=torch.Generator().manual_seed(0)).to(W_U)
        values, counts = projection.unique(return_counts=True)
        if 2 * counts.max() < len(b_U):
            return None
        one = int((projection == values[counts.argmax()]).nonzero()[0])
        is_shared = (W_U == W_U[:, one, None]).all(0) & (b_U == b_U[one])
        if 2 * is_shared.sum() < len(b_U):
            return None
        return is_shared.nonzero()[:, 0], one, (~is_shared).nonzero()[:, 0]

    def _logits_with_shared_columns(self, x: Resid, shared: torch.Tensor, one: int,
                                    others: torch.Tensor) -> Float[torch.Tensor, "batch pos d_vocab"]:
        """The same logits as x @ W_U + b_U (to float rounding), computing the shared columns' logit once."""
        logits = (x @ self.W_U[:, one] + self.b_U[one])[..., None].expand(*x.shape[:-1], len(self.b_U)).contiguous()
        logits[..., others] = affine(x, self.W_U[:, others], self.b_U[others])
        return logits


# ================================================================================================
# The model
# ================================================================================================


def _parameter(path: str, shape: str) -> property:
    """A read-only property: the parameter at ``path`` of the model (``"embed.W_E"``), or of every block
    (``"blocks.attn.W_Q"``), stacked over layers; ``shape`` names its dimensions."""
    if not path.startswith("blocks."):
        return property(attrgetter(path), doc=f"``{path}``: [{shape}].")
    get = attrgetter(path.removeprefix("blocks."))
    return property(lambda self: torch.stack([get(block) for block in self.blocks]),
                    doc=f"``{path}`` of every block, stacked: [{shape}].")


class HookedTransformer(HookedRootModule):
    """A decoder-only transformer with the classic TransformerLens API.

    ``model(input)`` takes a string, a list of strings or a token tensor [batch pos] and returns
    logits [batch pos d_vocab] (or the loss, see ``return_type``).
    """

    def __init__(self, cfg: HookedTransformerConfig | dict, tokenizer=None, move_to_device: bool = True):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = HookedTransformerConfig.from_dict(cfg)
        self.cfg = cfg
        if tokenizer is None and cfg.tokenizer_name == "gpt2":
            tokenizer = gpt2_tokenizer()
        self.tokenizer = tokenizer
        if cfg.d_vocab == -1:
            if tokenizer is None:
                raise ValueError("Give d_vocab in the config, or a tokenizer to read it from.")
            cfg.d_vocab = cfg.d_vocab_out = len(tokenizer)

        self.embed = Embed(cfg)
        self.hook_embed = HookPoint()  # [batch pos d_model]
        if cfg.positional_embedding_type != "rotary":  # rotary positions live in attention (hook_rot_q, hook_rot_k)
            self.pos_embed = PosEmbed(cfg)
            self.hook_pos_embed = HookPoint()  # [batch pos d_model]
        self.blocks = nn.ModuleList([TransformerBlock(cfg, i) for i in range(cfg.n_layers)])
        self.ln_final = make_norm(cfg, cfg.d_model)
        self.unembed = Unembed(cfg)

        self.init_weights()
        if move_to_device:
            checks.device(cfg.device)
            self.to(cfg.device)
        self.setup()

    def init_weights(self) -> None:
        """GPT-2-style init: weight matrices ~ N(0, initializer_range), biases 0, LayerNorm weights 1."""
        generator = torch.Generator().manual_seed(self.cfg.seed) if self.cfg.seed is not None else None
        for name, param in self.named_parameters():
            if param.is_meta:  # built empty, for weights to come (helpers.big_models)
                continue
            if name.split(".")[-1].lstrip("_").startswith("W_"):  # _W_K, _W_V: grouped-query attention's
                with torch.no_grad():
                    param.copy_(torch.randn(param.shape, generator=generator) * self.cfg.initializer_range)

    # ----- forward pass -----------------------------------------------------------------------

    def input_to_embed(self, input, prepend_bos: bool | None = None,
                       past_kv_cache=None) -> tuple[Resid, Int[torch.Tensor, "batch pos"], Resid | None, None]:
        """``(residual, tokens, shortformer_pos_embed, attention_mask)``: the residual stream entering block 0 (the
        token embeddings plus the positions, through hook_embed and hook_pos_embed) and the tokens of ``input``.
        A "shortformer" model does not add its positions to the stream: they come third, for the queries' and keys'
        inputs (else None). attention_mask is always None: batches are padded on the right, where the causal mask
        is enough. ``model(residual, start_at_layer=0, tokens=tokens, shortformer_pos_embed=...)`` goes on. With
        ``past_kv_cache``, the tokens come after the cached positions and get the positions that follow them."""
        tokens = self._input_tokens(input, prepend_bos)
        embed = self.hook_embed(self.embed(tokens))
        if self.cfg.positional_embedding_type == "rotary":  # the positions are in each layer's q and k
            return embed, tokens, None, None
        pos_embed = self.hook_pos_embed(self.pos_embed(tokens, self.get_pos_offset(past_kv_cache, tokens.shape[0])))
        if self.cfg.positional_embedding_type == "shortformer":
            return embed, tokens, pos_embed, None
        return embed + pos_embed, tokens, None, None

    def forward(self, input, return_type: str | None = "logits", loss_per_token: bool = False,
                prepend_bos: bool | None = None, stop_at_layer: int | None = None,
                start_at_layer: int | None = None, tokens: Int[torch.Tensor, "batch pos"] | None = None,
                shortformer_pos_embed: Resid | None = None, attention_mask: torch.Tensor | None = None,
                past_kv_cache=None, last_positions: int | None = None):
        """Run the model.

        input: a string, a list of strings (padded) or tokens [batch pos]. With ``start_at_layer``,
        input is the residual stream [batch pos d_model] entering that block; ``tokens`` then gives the tokens
        for the loss, and ``shortformer_pos_embed`` a shortformer model's positions (by default those of
        positions 0, 1, ...; see input_to_embed).
        return_type: "logits", "loss", "both" (logits, loss) or None.
        stop_at_layer: return the residual stream entering block ``stop_at_layer`` (negative: from the end).
        attention_mask: accepted for the classic signature when it masks nothing (all ones).
        past_kv_cache: a ``HookedTransformerKeyValueCache`` (helpers.past_key_value_caching): ``input`` holds the
        positions after the cached ones, which each attention layer reads from the cache (and adds the new ones to,
        unless it is frozen). The hooks see the new positions only.
        last_positions: run only the last ``last_positions`` positions past the last block's keys and values (its
        queries, attention output and MLP) and through the unembedding: logits [batch last_positions d_vocab]. The
        last block's hooks on resid_pre, ln1 and the keys and values see every position; those on the queries and
        everything after them, these positions only. For a metric that reads the end of the sequences
        (activation_patching's logit_positions); not with a loss.
        """
        checks.forward(return_type, start_at_layer, stop_at_layer, self.cfg.n_layers, last_positions)
        if attention_mask is not None and not bool(torch.as_tensor(attention_mask).all()):
            raise ValueError("attention_mask has zeros: helpers pads batches on the right and masks only the "
                             "future, so it takes no padding mask. Pad on the right (to_tokens does), or run "
                             "prompts of different lengths one at a time.")
        if start_at_layer is None:
            residual, tokens, shortformer_pos_embed, _ = self.input_to_embed(input, prepend_bos, past_kv_cache)
        else:
            checks.residual(input, self.cfg.d_model, start_at_layer)
            residual = input
            if self.cfg.positional_embedding_type == "shortformer" and shortformer_pos_embed is None:
                shortformer_pos_embed = self.pos_embed(residual[..., 0],  # only the [batch pos] shape is read
                                                       self.get_pos_offset(past_kv_cache, residual.shape[0]))
        if past_kv_cache is not None:
            past_kv_cache.append_attention_mask(torch.ones(residual.shape[:2], dtype=torch.int))
        for layer in range(self.cfg.n_layers)[start_at_layer:stop_at_layer]:
            residual = self.blocks[layer](residual, shortformer_pos_embed,
                                          past_kv_cache_entry=None if past_kv_cache is None else past_kv_cache[layer],
                                          last_positions=last_positions if layer == self.cfg.n_layers - 1 else None)
        if stop_at_layer is not None:
            return residual

        residual = self.ln_final(residual)
        if return_type is None:  # the hooks have run (ln_final's too); the unembedding is not needed
            return None
        if return_type != "logits" and tokens is None:
            raise ValueError("The loss needs the tokens: with start_at_layer, pass them as tokens=...")
        if return_type == "loss" and self.cfg.output_logits_soft_cap <= 0:
            return self.unembed.loss(residual, tokens, per_token=loss_per_token)  # no logits kept: see Unembed.loss
        logits = self.unembed(residual)
        if self.cfg.output_logits_soft_cap > 0:  # Gemma 2
            logits = torch.tanh(logits / self.cfg.output_logits_soft_cap) * self.cfg.output_logits_soft_cap
        if return_type == "logits":
            return logits
        loss = self.loss_fn(logits, tokens, per_token=loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    def loss_fn(self, logits: Float[torch.Tensor, "batch pos d_vocab"],
                tokens: Int[torch.Tensor, "batch pos"], per_token: bool = False) -> torch.Tensor:
        """Next-token cross-entropy: mean, or [batch pos-1] if ``per_token`` (forward's "loss" computes the same
        from the final residual stream, Unembed.loss)."""
        return utils.lm_cross_entropy_loss(logits, tokens, per_token)

    def run_with_cache(self, *model_args, return_cache_object: bool = True, remove_batch_dim: bool = False,
                       **kwargs) -> tuple[object, ActivationCache | dict[str, torch.Tensor]]:
        """Run the model and return ``(output, cache)``, the cache an ActivationCache of the activations at the
        chosen hook points (``names_filter``, ``device``, ``incl_bwd``... as in HookedRootModule.run_with_cache),
        or their plain dict with ``return_cache_object=False``."""
        out, cache = super().run_with_cache(*model_args, remove_batch_dim=remove_batch_dim, **kwargs)
        if return_cache_object:
            cache = ActivationCache(cache, self, has_batch_dim=not remove_batch_dim)
        return out, cache

    # ----- tokenizer --------------------------------------------------------------------------

    def _input_tokens(self, input, prepend_bos: bool | None) -> Int[torch.Tensor, "batch pos"]:
        """The model's input as token ids [batch pos] on its device: a string or a list of strings through
        to_tokens; ids [pos] or [batch pos] checked."""
        if isinstance(input, str | list):
            return self.to_tokens(input, prepend_bos=prepend_bos)
        tokens = checks.token_ids(input, self.cfg.d_vocab, "input")
        return (tokens[None] if tokens.ndim == 1 else tokens).to(self.cfg.device)

    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("This model has no tokenizer: pass token tensors instead of strings, or give it one "
                             "(from_pretrained(..., tokenizer=...), or model.tokenizer = AutoTokenizer...).")
        return self.tokenizer

    def to_tokens(self, input: str | list[str], prepend_bos: bool | None = None,
                  move_to_device: bool = True, truncate: bool = True) -> Int[torch.Tensor, "batch pos"]:
        """Tokenize a string or a list of strings (right-padded) into [batch pos], BOS first by default."""
        tok = self._need_tokenizer()
        texts = checks.texts(input)
        bos = utils.override_or_use_default_value(self.cfg.default_prepend_bos, prepend_bos)
        if bos and tok.bos_token_id is None:
            raise ValueError(f"prepend_bos=True, but the tokenizer of {self.cfg.model_name} has no BOS token (Qwen's "
                             "has none): pass prepend_bos=False.")
        # The tokenizer's own special tokens are left out (Llama's and Gemma's would add a BOS), and the BOS id goes
        # first when asked: the text is split as it would be alone.
        out = tok(texts, return_tensors="pt", padding=True, truncation=truncate, add_special_tokens=False,
                  max_length=self.cfg.n_ctx + 1 - bos if truncate else None)["input_ids"].long()
        if bos:
            out = torch.cat([torch.full((out.shape[0], 1), tok.bos_token_id, dtype=out.dtype), out], dim=1)
        if truncate:  # one token more than n_ctx tells that the text was cut
            out = checks.cut_to_context(out, self.cfg.n_ctx)
        return out.to(self.cfg.device) if move_to_device else out

    def to_string(self, tokens) -> str | list[str]:
        """Decode tokens [pos] to a string, or [batch pos] to a list of strings."""
        tok = self._need_tokenizer()
        tokens = checks.token_ids(tokens, self.cfg.d_vocab, "tokens", ndims=(0, 1, 2))
        if tokens.ndim == 0:
            tokens = tokens[None]
        if tokens.ndim == 2:
            return [self.to_string(t) for t in tokens]
        return tok.decode(tokens.tolist(), clean_up_tokenization_spaces=False)

    def to_str_tokens(self, input, prepend_bos: bool | None = None) -> list[str] | list[list[str]]:
        """Each token of a string (or of tokens [pos] / [batch pos]) as its own string."""
        if isinstance(input, list) and input and isinstance(input[0], str):
            return [self.to_str_tokens(s, prepend_bos) for s in input]
        if isinstance(input, str):
            tokens = self.to_tokens(input, prepend_bos=prepend_bos)[0]
        else:
            tokens = checks.token_ids(input, self.cfg.d_vocab, "input", ndims=(0, 1, 2))
            if tokens.ndim == 2:
                if tokens.shape[0] != 1:
                    return [self.to_str_tokens(t) for t in tokens]
                tokens = tokens[0]
            if tokens.ndim == 0:
                tokens = tokens[None]
        tok = self._need_tokenizer()
        return [tok.decode([t], clean_up_tokenization_spaces=False) for t in tokens.tolist()]

    def to_single_token(self, string: str) -> int:
        """The id of a string that is exactly one token; an error if it is several."""
        tokens = self.to_tokens(string, prepend_bos=False)[0]
        if tokens.numel() != 1:
            raise ValueError(
                f"{string!r} is not a single token: it splits into {self.to_str_tokens(tokens)}. "
                "Mind the leading space: ' John' and 'John' are different tokens."
            )
        return int(tokens[0])

    def to_single_str_token(self, token: int) -> str:
        token = int(token)
        if not 0 <= token < self.cfg.d_vocab:
            raise ValueError(f"Token id {token} is outside the vocabulary [0, {self.cfg.d_vocab}).")
        return self.to_str_tokens(torch.tensor([token]))[0]

    def get_token_position(self, single_token: str | int, input, mode: str = "first",
                           prepend_bos: bool | None = None) -> int:
        """Position of ``single_token`` in ``input`` (a string or tokens [pos] / [1 pos])."""
        if isinstance(input, str):
            tokens = self.to_tokens(input, prepend_bos=prepend_bos)
        else:
            tokens = torch.as_tensor(input)
        if tokens.ndim == 2:
            if tokens.shape[0] != 1:
                raise ValueError(f"get_token_position needs one sequence, got a batch of {tokens.shape[0]}.")
            tokens = tokens[0]
        token = self.to_single_token(single_token) if isinstance(single_token, str) else int(single_token)
        positions = (tokens == token).nonzero().flatten().tolist()
        if not positions:
            raise ValueError(f"Token {single_token!r} does not occur in the input.")
        if mode not in ("first", "last"):
            raise ValueError(f"mode must be 'first' or 'last', got {mode!r}.")
        return positions[0] if mode == "first" else positions[-1]

    def tokens_to_residual_directions(self, tokens) -> Float[torch.Tensor, "... d_model"]:
        """The unembedding direction W_U[:, token] of a token (id, string, or tensor of ids)."""
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        checks.token_ids(tokens, self.cfg.d_vocab, "tokens", ndims=(0, 1, 2))
        if isinstance(tokens, int):
            return self.W_U[:, tokens]
        return einops.rearrange(self.W_U[:, torch.as_tensor(tokens)], "d_model ... -> ... d_model")

    # ----- generation -------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, input: str | torch.Tensor = "", max_new_tokens: int = 10, stop_at_eos: bool = True,
                 eos_token_id: int | list[int] | None = None, do_sample: bool = True, top_k: int | None = None,
                 top_p: float | None = None, temperature: float = 1.0, use_past_kv_cache: bool = True,
                 prepend_bos: bool | None = None, seed: int | None = None, return_type: str = "input",
                 verbose: bool = True):
        """Sample up to ``max_new_tokens`` tokens. With ``seed``, the same call gives the same text.

        return_type "input" returns the same kind as the input (a string for a string), "str" or "tokens".
        stop_at_eos: a sequence ends at ``eos_token_id`` (by default the tokenizer's; a list: any of them), and
        is padded with it while the others go on. use_past_kv_cache: keep the keys and values of the positions
        already run (a HookedTransformerKeyValueCache), so that each step runs the new token only; the hooks see
        the prompt's positions at the first step, then the new position at each step. Without it (and once the
        text is longer than n_ctx, where the window slides, or for bidirectional attention) each step runs the
        whole sequence again. Both give the same tokens.
        """
        as_str = isinstance(input, str)
        checks.generate(max_new_tokens, return_type)
        # One prompt: a string, or ids (a list of strings is refused here: right-padded, it would not continue).
        tokens = self._input_tokens(input if as_str else checks.token_ids(input, self.cfg.d_vocab, "input"),
                                    prepend_bos)
        if stop_at_eos:
            if eos_token_id is None:
                eos_token_id = getattr(self.tokenizer, "eos_token_id", None)
            if eos_token_id is None:
                raise ValueError("stop_at_eos=True stops at the end-of-text token, but this model has no tokenizer "
                                 "with one: pass eos_token_id=<id>, or stop_at_eos=False to always generate "
                                 "max_new_tokens tokens.")
            stop_ids = torch.tensor(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id],
                                    device=tokens.device)
        # With seed, a private generator; without, torch's global one (so torch.manual_seed applies).
        generator = torch.Generator(device=tokens.device).manual_seed(seed) if seed is not None else None
        finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        cache = None
        if use_past_kv_cache and self.cfg.attention_dir == "causal":
            cache = HookedTransformerKeyValueCache.init_cache(self.cfg, self.cfg.device, tokens.shape[0])
        for step in tqdm(range(max_new_tokens), disable=not verbose):
            if cache is not None and tokens.shape[1] > self.cfg.n_ctx:
                cache = None  # the window slides: every position moves, the cached keys no longer fit
            if cache is None:
                logits = self._last_logits(checks.context_window(tokens, self.cfg.n_ctx, step))
            else:
                logits = self._last_logits(tokens if step == 0 else tokens[:, -1:], cache)
            if do_sample and temperature > 0:
                next_token = utils.sample_logits(logits, top_k=top_k, top_p=top_p, temperature=temperature,
                                                 generator=generator)
            else:
                next_token = logits.argmax(-1)
            if stop_at_eos:
                next_token = torch.where(finished, stop_ids[0], next_token)
                finished |= torch.isin(next_token, stop_ids)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)
            if stop_at_eos and finished.all():
                break

        if return_type == "tokens" or (return_type == "input" and not as_str):
            return tokens
        bos = as_str and utils.override_or_use_default_value(self.cfg.default_prepend_bos, prepend_bos)
        text = self.to_string(tokens[:, 1:] if bos else tokens)
        return text[0] if as_str and return_type == "input" else text

    def _last_logits(self, tokens: Int[torch.Tensor, "batch pos"],
                     past_kv_cache=None) -> Float[torch.Tensor, "batch d_vocab"]:
        """The logits of the last position (every hook runs on every position; only the last is unembedded)."""
        residual = self(tokens, stop_at_layer=self.cfg.n_layers, past_kv_cache=past_kv_cache)
        return self.unembed(self.ln_final(residual)[:, -1:])[:, 0]

    def get_pos_offset(self, past_kv_cache, batch_size: int) -> int:
        """How many positions ``past_kv_cache`` holds (0 for None): where new tokens start."""
        if past_kv_cache is None:
            return 0
        cached = next((e.past_keys.shape[0] for e in past_kv_cache.entries if e.past_keys.shape[1]), batch_size)
        if cached != batch_size:
            raise ValueError(f"past_kv_cache holds a batch of {cached} sequences, but the input has {batch_size}: "
                             "continue each cached sequence, or start a new cache (HookedTransformerKeyValueCache."
                             "init_cache(model.cfg, model.cfg.device, batch_size)).")
        return past_kv_cache.pos_offset

    # ----- weights, stacked over layers ---------------------------------------------------------

    W_E = _parameter("embed.W_E", "d_vocab d_model")
    W_pos = _parameter("pos_embed.W_pos", "n_ctx d_model")
    W_U = _parameter("unembed.W_U", "d_model d_vocab")
    b_U = _parameter("unembed.b_U", "d_vocab")
    W_Q = _parameter("blocks.attn.W_Q", "n_layers n_heads d_model d_head")
    W_K = _parameter("blocks.attn.W_K", "n_layers n_heads d_model d_head")
    W_V = _parameter("blocks.attn.W_V", "n_layers n_heads d_model d_head")
    W_O = _parameter("blocks.attn.W_O", "n_layers n_heads d_head d_model")
    b_Q = _parameter("blocks.attn.b_Q", "n_layers n_heads d_head")
    b_K = _parameter("blocks.attn.b_K", "n_layers n_heads d_head")
    b_V = _parameter("blocks.attn.b_V", "n_layers n_heads d_head")
    b_O = _parameter("blocks.attn.b_O", "n_layers d_model")
    W_in = _parameter("blocks.mlp.W_in", "n_layers d_model d_mlp")
    W_out = _parameter("blocks.mlp.W_out", "n_layers d_mlp d_model")
    W_gate = _parameter("blocks.mlp.W_gate", "n_layers d_model d_mlp")  # gated MLPs only
    b_in = _parameter("blocks.mlp.b_in", "n_layers d_mlp")
    b_out = _parameter("blocks.mlp.b_out", "n_layers d_model")

    @property
    def QK(self) -> FactoredMatrix:
        """W_Q W_K^T of every head, [n_layers n_heads d_model d_model], kept factored."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """W_V W_O of every head, [n_layers n_heads d_model d_model], kept factored."""
        return FactoredMatrix(self.W_V, self.W_O)

    def all_head_labels(self) -> list[str]:
        return [f"L{layer}H{head}" for layer in range(self.cfg.n_layers) for head in range(self.cfg.n_heads)]

    # ----- the optional hook points (off by default: they cost memory) -------------------------

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Switch ``blocks.L.attn.hook_result`` on or off: each head's output in d_model [batch pos head d_model]."""
        self.cfg.use_attn_result = use_attn_result

    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Switch ``blocks.L.hook_{q,k,v}_input`` on or off: one copy of the stream per head for each of q, k
        and v (per key/value head for k and v with grouped-query attention)."""
        self.cfg.use_split_qkv_input = use_split_qkv_input

    def set_use_hook_mlp_in(self, use_hook_mlp_in: bool) -> None:
        """Switch ``blocks.L.hook_mlp_in`` on or off: the MLP's input, apart from resid_mid."""
        if use_hook_mlp_in and self.cfg.attn_only:
            raise ValueError("An attention-only model has no MLP, so no hook_mlp_in.")
        self.cfg.use_hook_mlp_in = use_hook_mlp_in

    def set_ungroup_grouped_query_attention(self, ungroup_grouped_query_attention: bool) -> None:
        """With grouped-query attention, repeat the keys and values per query head before hook_k and hook_v (and
        hook_k_input, hook_v_input): the hooks then see n_heads heads. The output is the same."""
        if ungroup_grouped_query_attention and self.cfg.use_qk_norm and not self.cfg.qk_norm_per_head and \
                self.cfg.n_key_value_heads is not None:
            raise ValueError("This model's k_norm normalises all its key/value heads at once (OLMo's), so the keys "
                             "cannot be repeated per query head before it: leave the grouped-query attention grouped.")
        self.cfg.ungroup_grouped_query_attention = ungroup_grouped_query_attention

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        """Switch ``blocks.L.hook_attn_in`` on or off: one copy of the stream per head, shared by q, k and v."""
        if use_attn_in and self.cfg.n_key_value_heads is not None:
            raise ValueError("Grouped-query attention (n_key_value_heads) has fewer key/value heads than query heads, "
                             "so one input per head cannot feed all three: use set_use_split_qkv_input(True).")
        self.cfg.use_attn_in = use_attn_in

    # ----- loading and weight processing --------------------------------------------------------

    @classmethod
    def from_pretrained(cls, model_name: str, checkpoint_index: int | None = None,
                        checkpoint_value: int | None = None, hf_model=None, tokenizer=None, device_map=None,
                        max_memory: dict | None = None, offload_folder: str | None = None,
                        **kwargs) -> HookedTransformer:
        """Load a model by name (see helpers.loading.MODELS): real ones from the Hub, the course's from data/; any
        other Hub repository "owner/name" of a supported architecture too.

        kwargs: the weight-processing steps (``weights.PROCESSING``: fold_ln, center_writing_weights,
        center_unembed, fold_value_biases, refactor_factored_attn_matrices; they leave the log-probs
        unchanged), and any HookedTransformerConfig field (device, dtype, use_attn_result, ...).
        checkpoint_index / checkpoint_value pick a training checkpoint (see loading.get_checkpoint_labels).
        ``hf_model``: a transformers model of yours (GPT-2, Llama, Mistral, Qwen 2/3, Gemma 1/2/3, GPT-NeoX, OLMo 2;
        fine-tuned...) whose weights replace the Hub's; ``model_name`` may also be a directory written by
        ``save_pretrained``. ``tokenizer`` replaces the model's.

        Bigger models (helpers.big_models): ``dtype`` torch.float32 (default), torch.bfloat16 or torch.float16; the
        model is built on the meta device and each weight reaches it once. ``device_map`` places its modules with
        Hugging Face accelerate: a dict {module name: device} ({"embed": 0, "blocks.0": 0, ..., "unembed": 1}; a
        device is a GPU index, "cpu", or "disk" with ``offload_folder``), or "auto" within ``max_memory``.
        """
        processing, cfg_overrides = weights.split_processing(kwargs)
        model = big_models.from_pretrained(cls, model_name, checkpoint_index, checkpoint_value, hf_model,
                                           tokenizer, processing, device_map, max_memory, offload_folder,
                                           **cfg_overrides)
        print(f"Loaded pretrained model {model_name} into HookedTransformer")
        return model

    @classmethod
    def from_pretrained_no_processing(cls, model_name: str, **kwargs) -> HookedTransformer:
        """``from_pretrained`` with every weight-processing step off: the weights as published."""
        return cls.from_pretrained(model_name, **{**weights.NO_PROCESSING, **kwargs})

    def load_and_process_state_dict(self, state_dict: dict[str, torch.Tensor], **processing) -> None:
        """Load classic-named weights, then apply the processing steps (``weights.PROCESSING``; each keeps
        the model's function). Folding the LayerNorms turns them into ``LNPre``."""
        state_dict, normalization_type = weights.process_state_dict(state_dict, self.cfg, **processing)
        if normalization_type != self.cfg.normalization_type:
            self.set_normalization(normalization_type)
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise KeyError(f"State dict does not match the model: missing {missing}, "
                           f"unexpected {unexpected}.")

    def set_normalization(self, normalization_type: str | None) -> None:
        """Swap every LayerNorm module for one of another type (used after folding LN weights)."""
        self.cfg.normalization_type = normalization_type
        for block in self.blocks:
            block.ln1 = block._pre_norm(self.cfg)
            if not self.cfg.attn_only:
                block.ln2 = block._pre_norm(self.cfg)
                if self.cfg.is_layer_norm_activation():
                    block.mlp.ln = make_norm(self.cfg, self.cfg.d_mlp)
        self.ln_final = make_norm(self.cfg, self.cfg.d_model)
        self.to(self.cfg.device)
        self.setup()

    def process_weights_(self, **processing) -> HookedTransformer:
        """Apply the processing steps (fold_ln=..., see ``weights.PROCESSING``) to this model in place."""
        state_dict = {k: v.detach().clone() for k, v in self.state_dict().items()}
        self.load_and_process_state_dict(state_dict, **processing)
        return self
