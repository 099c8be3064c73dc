"""The classic components importable from helpers.model (LayerNormPre, LayerNorm, Attention,
GroupedQueryAttention, MLP, GatedMLP, TransformerBlock...), each built from a config object or a plain dict, and
the config fields they read: n_key_value_heads, gated_mlp, attention_dir, positional_embedding_type."""

import pytest
import torch
import torch.nn.functional as F
from conftest import randomise_

from helpers import HookedTransformer, HookedTransformerConfig, utils
from helpers.model import (
    MLP,
    Attention,
    Embed,
    GatedMLP,
    GroupedQueryAttention,
    LayerNorm,
    LayerNormPre,
    PosEmbed,
    TransformerBlock,
    Unembed,
)

CFG = dict(n_layers=1, d_model=24, n_ctx=12, d_head=6, n_heads=4, d_mlp=40, d_vocab=30, act_fn="silu", seed=0,
           device="cpu")
X = torch.randn(2, 7, 24, generator=torch.Generator().manual_seed(1))


def random_module(cls, **overrides):
    module = cls({**CFG, **overrides})
    randomise_(module, seed=3)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.rsplit(".", 1)[-1].lstrip("_").startswith("W_"):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.3)
    return module


@pytest.mark.parametrize("cls, args", [(Embed, (torch.tensor([[1, 2]]),)), (PosEmbed, (torch.tensor([[1, 2]]),)),
                                       (LayerNormPre, (X,)), (LayerNorm, (X,)), (MLP, (X,)), (GatedMLP, (X,)),
                                       (Attention, (X, X, X)), (TransformerBlock, (X,)), (Unembed, (X,))])
def test_components_take_a_dict_or_a_config(cls, args):
    from_dict = random_module(cls)
    from_config = cls(HookedTransformerConfig(**CFG))
    from_config.load_state_dict(from_dict.state_dict())
    with torch.no_grad():
        assert torch.equal(from_dict(*args), from_config(*args))


def test_grouped_query_attention_takes_a_dict_too():
    attn = GroupedQueryAttention({**CFG, "n_key_value_heads": 2})
    assert attn.cfg.n_key_value_heads == 2 and attn.repeat_kv_heads == 2
    with pytest.raises(ValueError, match="n_key_value_heads"):
        GroupedQueryAttention(CFG)


def test_layer_norm_pre_centres_and_scales_without_weights():
    ln = LayerNormPre(CFG)
    out = ln(X * 5 + 2)
    assert not list(ln.parameters())
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.norm(dim=-1), torch.full((2, 7), 24**0.5), atol=1e-3, rtol=0)
    full = random_module(LayerNorm)
    assert full.w.shape == (24,)  # the length defaults to d_model
    torch.testing.assert_close(full(X), F.layer_norm(X, (24,), full.w, full.b, eps=1e-5))
    assert LayerNorm(CFG, length=40).b.shape == (40,)


def test_grouped_query_attention_is_attention_with_shared_keys_and_values():
    grouped = random_module(GroupedQueryAttention, n_key_value_heads=2)
    assert grouped._W_K.shape == (2, 24, 6) and grouped._b_V.shape == (2, 6)
    assert grouped.W_K.shape == (4, 24, 6)
    assert torch.equal(grouped.W_K[1], grouped._W_K[0]) and torch.equal(grouped.W_V[2], grouped._W_V[1])
    plain = Attention(CFG)
    plain.load_state_dict({name: getattr(grouped, name) for name in
                           ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")})
    with torch.no_grad():
        torch.testing.assert_close(grouped(X, X, X), plain(X, X, X))
    model = HookedTransformer({**CFG, "n_key_value_heads": 2})
    _, cache = model.run_with_cache(torch.tensor([[1, 2, 3]]))
    assert cache["k", 0].shape == (1, 3, 2, 6) and cache["v", 0].shape == (1, 3, 2, 6)  # the key/value heads
    assert cache["q", 0].shape == (1, 3, 4, 6) and cache["pattern", 0].shape == (1, 4, 3, 3)
    assert model.W_K.shape == (1, 4, 24, 6)


def test_gated_mlp_follows_its_equation_and_hooks_each_branch():
    mlp = random_module(GatedMLP)
    gate, linear = X @ mlp.W_gate, X @ mlp.W_in
    expected = (F.silu(gate) * linear + mlp.b_in) @ mlp.W_out + mlp.b_out
    with torch.no_grad():
        torch.testing.assert_close(mlp(X), expected, rtol=1e-5, atol=1e-5)
    model = HookedTransformer({**CFG, "gated_mlp": True})
    _, cache = model.run_with_cache(torch.tensor([[1, 2, 3]]))
    for hook in ("hook_pre", "hook_pre_linear", "hook_post"):
        assert cache[f"blocks.0.mlp.{hook}"].shape == (1, 3, 40)
    assert model.W_gate.shape == (1, 24, 40)
    assert model.cfg.n_params == 4 * 4 * 24 * 6 + 3 * 24 * 40  # three MLP matrices
    solu = GatedMLP({**CFG, "act_fn": "solu_ln"})
    assert isinstance(solu.ln, LayerNorm) and solu.act_fn is utils.solu


@pytest.mark.parametrize("fields, message", [
    (dict(n_key_value_heads=3), "must divide n_heads"),
    (dict(n_key_value_heads=2, use_attn_in=True), "use_split_qkv_input"),
    (dict(attention_dir="sideways"), "attention_dir"),
    (dict(positional_embedding_type="alibi"), "shortformer"),
    (dict(act_fn="swish"), "act_fn"),
])
def test_config_refuses_what_the_model_cannot_build(fields, message):
    with pytest.raises(ValueError, match=message):
        HookedTransformerConfig(**{**CFG, **fields})


def logits_after_editing(model, tokens, position):
    edited = tokens.clone()
    edited[0, position] = (edited[0, position] + 1) % model.cfg.d_vocab
    with torch.no_grad():
        return model(tokens), model(edited)


def test_bidirectional_attention_reads_later_positions():
    tokens = torch.tensor([[3, 1, 4, 1, 5, 9]])
    for direction, earlier_changes in (("causal", False), ("bidirectional", True)):
        model = HookedTransformer({**CFG, "attention_dir": direction})
        randomise_(model)
        before, after = logits_after_editing(model, tokens, position=4)
        assert (not torch.allclose(before[0, :4], after[0, :4])) == earlier_changes, direction
        _, cache = model.run_with_cache(tokens)
        assert utils.is_lower_triangular(cache["pattern", 0][0, 0]) == (direction == "causal")
        torch.testing.assert_close(cache["pattern", 0].sum(-1), torch.ones(1, 4, 6))


def test_shortformer_positions_reach_only_queries_and_keys():
    tokens = torch.tensor([[3, 1, 4, 1, 5]])
    model = HookedTransformer({**CFG, "positional_embedding_type": "shortformer"})
    randomise_(model)
    _, cache = model.run_with_cache(tokens)
    assert torch.equal(cache["blocks.0.hook_resid_pre"], cache["hook_embed"])  # not added to the stream
    assert cache["hook_pos_embed"].shape == (1, 5, 24)
    with torch.no_grad():
        model.blocks[0].attn.W_Q.zero_()
        model.blocks[0].attn.W_K.zero_()  # uniform attention: queries and keys no longer matter...
        before = model(tokens)
        model.pos_embed.W_pos.mul_(3)  # ...and neither do the positions, which only they read
        torch.testing.assert_close(model(tokens), before)


def test_ungrouping_repeats_keys_and_values_before_their_hooks():
    model = HookedTransformer({**CFG, "n_key_value_heads": 2, "use_split_qkv_input": True})
    randomise_(model)
    tokens = torch.tensor([[1, 2, 3]])
    grouped, cache = model.run_with_cache(tokens)
    assert cache["k", 0].shape[2] == cache["k_input", 0].shape[2] == 2
    model.set_ungroup_grouped_query_attention(True)
    ungrouped, cache = model.run_with_cache(tokens)
    assert cache["k", 0].shape[2] == cache["v_input", 0].shape[2] == 4
    torch.testing.assert_close(ungrouped, grouped)


def test_layer_norm_activation():
    assert HookedTransformerConfig(**{**CFG, "act_fn": "solu_ln"}).is_layer_norm_activation()
    assert not HookedTransformerConfig(**CFG).is_layer_norm_activation()
