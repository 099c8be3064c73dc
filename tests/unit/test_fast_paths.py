"""The fast paths compute what the plain ones do: the fused attention kernel, used when no hook can see the scores
or the pattern, and the unembedding of a vocabulary whose unused tokens share one column (the embedded models').

Attention uses F.scaled_dot_product_attention when hook_attn_scores and hook_pattern hold no hook. A hook that
returns None on those points forces the plain path without changing anything, so the two can be compared.
"""

import pytest
import torch

from helpers import HookedTransformer, HookedTransformerConfig, utils
from helpers.past_key_value_caching import HookedTransformerKeyValueCache

CONFIGS = {
    "gpt2-like": dict(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, d_vocab=97, act_fn="gelu_new",
                      normalization_type="LN"),
    "attn-only": dict(n_layers=2, d_model=64, n_heads=4, n_ctx=32, d_vocab=97, attn_only=True,
                      normalization_type="LN"),
    "solu": dict(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, d_vocab=97, act_fn="solu_ln",
                 normalization_type="LN"),
    "lnpre-no-scale": dict(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, d_vocab=97, act_fn="gelu",
                           normalization_type="LNPre", use_attn_scale=False),
}
FUSED_POINTS = ("hook_attn_scores", "hook_pattern")


def model_of(name: str) -> HookedTransformer:
    model = HookedTransformer(HookedTransformerConfig(**CONFIGS[name], seed=0, device="cpu"))
    return model.eval()


def plain_path_hooks(model):
    """A do-nothing hook on every point the fused kernels skip: the model then takes the plain path."""
    names = [name for name in model.hook_dict if name.endswith(FUSED_POINTS)]
    assert names, "the model has none of the fused points"
    return [(name, lambda act, hook: None) for name in names]


@pytest.mark.parametrize("name", CONFIGS)
def test_fused_forward_matches_the_plain_path(name):
    model = model_of(name)
    tokens = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        fused = model(tokens)
        plain = model.run_with_hooks(tokens, fwd_hooks=plain_path_hooks(model))
    assert not torch.equal(fused, plain), "both runs took the same path: the comparison would prove nothing"
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2-like", "solu"])
def test_fused_backward_matches_the_plain_path(name):
    model = model_of(name)
    tokens = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(3))
    grads = []
    for hooks in ([], plain_path_hooks(model)):
        model.zero_grad()
        model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for param_name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][param_name], rtol=1e-4, atol=1e-5, msg=param_name)


def test_hooks_on_the_fused_points_see_the_plain_activations():
    """A hook on the pattern sees a causal probability distribution, and a cache holds every point."""
    model = model_of("gpt2-like")
    tokens = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(4))
    _, cache = model.run_with_cache(tokens)
    pattern = cache["blocks.1.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 4, 10))
    assert torch.all(pattern.triu(1) == 0)
    assert "blocks.0.attn.hook_attn_scores" in cache


def test_a_cache_of_some_points_is_exactly_the_full_caches():
    """Notebook 01's lesson: names_filter and stop_at_layer give exactly the tensors of the full cache."""
    model = model_of("gpt2-like")
    tokens = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(5))
    _, full = model.run_with_cache(tokens)
    resid, small = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern"], stop_at_layer=1)
    assert torch.equal(small["blocks.0.attn.hook_pattern"], full["blocks.0.attn.hook_pattern"])
    assert torch.equal(resid, full["blocks.1.hook_resid_pre"])


# ----- the unembedding of shared columns ------------------------------------------------------------


def model_with_unused_tokens(d_vocab=300, n_used=40, seed=0):
    """A small model whose unembedding is like the embedded course models': most tokens unused, with a zero
    column and one bias; the ``n_used`` others random."""
    model = HookedTransformer(HookedTransformerConfig(**{**CONFIGS["gpt2-like"], "d_vocab": d_vocab}, seed=seed))
    used = torch.randperm(d_vocab, generator=torch.Generator().manual_seed(seed))[:n_used]
    with torch.no_grad():
        W_U, b_U = torch.zeros_like(model.W_U), torch.full_like(model.b_U, -100.0)
        W_U[:, used], b_U[used] = torch.randn(model.cfg.d_model, n_used), torch.randn(n_used)
        model.unembed.W_U.copy_(W_U)
        model.unembed.b_U.copy_(b_U)
    return model.eval(), used


def dense_logits(model, x):
    return x @ model.W_U + model.b_U


@torch.no_grad()
def test_shared_columns_give_the_dense_logits():
    model, used = model_with_unused_tokens()
    shared, one, others = model.unembed._shared_columns()
    assert sorted(others.tolist()) == sorted(used.tolist()) and len(shared) == 300 - 40 and one in shared.tolist()
    x = torch.randn(4, 80, model.cfg.d_model)  # 320 positions: the fast path
    torch.testing.assert_close(model.unembed(x), dense_logits(model, x), rtol=1e-5, atol=1e-5)
    tokens = torch.randint(300, (4, 32), generator=torch.Generator().manual_seed(1))
    model.unembed.SHARED_COLUMNS_MIN_POSITIONS = 10**9
    plain = model(tokens.repeat(4, 1))
    model.unembed.SHARED_COLUMNS_MIN_POSITIONS = 256
    torch.testing.assert_close(model(tokens.repeat(4, 1)), plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@torch.no_grad()
def test_the_loss_of_shared_columns_is_the_loss_of_the_dense_logits(dtype):
    """return_type="loss" computes the cross-entropy without the shared columns' logits; it is the loss of the
    logits the model returns, per token and on average, for targets among the shared tokens and among the others
    (in float32, within 1e-5 of the dense product's)."""
    model, used = model_with_unused_tokens()
    unused = ~torch.isin(torch.arange(300), used)
    model.unembed.b_U.data[unused] = 1.0  # still one shared column, now with most of the probability
    model.to(dtype)
    tokens = torch.randint(300, (8, 32), generator=torch.Generator().manual_seed(2))  # 256 positions: the fast path
    tokens[:, 1::2] = used[torch.randint(len(used), (8, 16), generator=torch.Generator().manual_seed(3))]
    shared = ~torch.isin(tokens[:, 1:], used)
    assert shared.any() and not shared.all()
    expected = utils.lm_cross_entropy_loss(model(tokens), tokens, per_token=True)  # float32 for both dtypes
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    assert per_token.dtype == torch.float32 and per_token.shape == (8, 31)
    torch.testing.assert_close(per_token, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(tokens, return_type="loss"), expected.mean(), rtol=1e-5, atol=1e-5)
    if dtype == torch.float32:
        x = model.ln_final(model(tokens, stop_at_layer=model.cfg.n_layers))
        dense = utils.lm_cross_entropy_loss(x @ model.W_U + model.b_U, tokens, per_token=True)
        torch.testing.assert_close(per_token, dense, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_an_unused_column_edited_in_place_is_seen():
    model, used = model_with_unused_tokens()
    x = torch.randn(512, model.cfg.d_model)
    model.unembed(x)  # the shared columns found and remembered
    unused = next(t for t in range(300) if t not in used.tolist())
    model.unembed.W_U.data[:, unused] = 1.0  # .data: no version counter moves
    model.unembed.b_U.data[unused] = 3.0
    logits = model.unembed(x)
    torch.testing.assert_close(logits, dense_logits(model, x), rtol=1e-5, atol=1e-5)
    assert torch.allclose(logits[:, unused], x.sum(-1) + 3.0, atol=1e-4)


@torch.no_grad()
def test_a_vocabulary_without_shared_columns_takes_the_dense_product():
    model = model_of("gpt2-like")
    assert model.unembed._shared_columns() is None
    few_used, _ = model_with_unused_tokens(n_used=200)  # 100 shared of 300: fewer than half
    assert few_used.unembed._shared_columns() is None


def test_a_loss_over_many_logits_is_computed_a_few_sequences_at_a_time(monkeypatch):
    """Above Unembed.LOSS_MAX_LOGITS, return_type="loss" unembeds a few sequences at a time (never the logits of the
    whole batch at once) and gives the loss of the whole batch's logits, per token, on average and in its
    gradients."""
    model = model_of("gpt2-like")  # no shared columns: the dense product
    tokens = torch.randint(97, (8, 32), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = utils.lm_cross_entropy_loss(model(tokens), tokens, per_token=True)  # [8 31]
    model.zero_grad()
    model(tokens, return_type="loss").backward()
    expected_grads = {name: p.grad.clone() for name, p in model.named_parameters()}

    monkeypatch.setattr(model.unembed, "LOSS_MAX_LOGITS", 3 * 32 * 97)  # three sequences' logits
    shapes = []
    model.unembed.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    with torch.no_grad():
        per_token = model(tokens, return_type="loss", loss_per_token=True)
    assert shapes == [(3, 32, 97), (3, 32, 97), (2, 32, 97)]
    torch.testing.assert_close(per_token, expected, rtol=1e-6, atol=1e-6)
    model.zero_grad()
    loss = model(tokens, return_type="loss")
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-6, atol=1e-6)
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_gradients_reach_every_column_of_the_unembedding():
    model, _ = model_with_unused_tokens()
    x = torch.randn(512, model.cfg.d_model)
    model.unembed(x).sin().sum().backward()  # sin: every logit's gradient is a cosine, never zero
    W_U = model.W_U.detach().clone().requires_grad_(True)
    (x @ W_U + model.b_U.detach()).sin().sum().backward()
    torch.testing.assert_close(model.unembed.W_U.grad, W_U.grad)
    assert (W_U.grad != 0).all()


# ---------------------------------------------------------------- the last block at the last positions only

LAST_POSITIONS_CONFIGS = {
    "gpt2-like": CONFIGS["gpt2-like"],
    "llama-like": dict(n_layers=2, d_model=64, n_heads=4, n_key_value_heads=2, d_mlp=128, n_ctx=32, d_vocab=97,
                       act_fn="silu", gated_mlp=True, normalization_type="RMS", positional_embedding_type="rotary",
                       rotary_dim=8),
    "shortformer, attn-only": dict(n_layers=2, d_model=64, n_heads=4, n_ctx=32, d_vocab=97, attn_only=True,
                                   normalization_type="LN", positional_embedding_type="shortformer"),
    "neox-like (parallel, sliding window)": dict(n_layers=2, d_model=64, n_heads=4, d_mlp=128, n_ctx=32, d_vocab=97,
                                                 act_fn="gelu", normalization_type="LN", parallel_attn_mlp=True,
                                                 positional_embedding_type="rotary", rotary_dim=8,
                                                 use_local_attn=True, window_size=6, attn_types=["local", "local"]),
}


@pytest.mark.parametrize("name", LAST_POSITIONS_CONFIGS)
@torch.no_grad()
def test_last_positions_give_the_last_logits(name):
    """model(x, last_positions=k) is model(x)[:, -k:], on the fused and the plain attention path, with or without
    a key/value cache of earlier positions; the last block's hooks past its keys and values see k positions."""
    model = HookedTransformer(HookedTransformerConfig(**LAST_POSITIONS_CONFIGS[name], seed=0, device="cpu")).eval()
    tokens = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(2))
    full = model(tokens)
    for k in (1, 3, 20):
        torch.testing.assert_close(model(tokens, last_positions=k), full[:, -k:], rtol=1e-5, atol=1e-5)
        plain = model.run_with_hooks(tokens, last_positions=k, fwd_hooks=plain_path_hooks(model))
        torch.testing.assert_close(plain, full[:, -k:], rtol=1e-5, atol=1e-5)
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, "cpu", 3)
    model(tokens[:, :12], past_kv_cache=cache)
    torch.testing.assert_close(model(tokens[:, 12:], past_kv_cache=cache, last_positions=2), full[:, -2:],
                               rtol=1e-5, atol=1e-5)
    _, acts = model.run_with_cache(tokens, last_positions=3)
    last = model.cfg.n_layers - 1
    assert acts[f"blocks.{last}.hook_resid_pre"].shape[1] == acts[f"blocks.{last}.attn.hook_v"].shape[1] == 20
    assert acts[f"blocks.{last}.attn.hook_z"].shape[1] == acts[f"blocks.{last}.hook_resid_post"].shape[1] == 3
    assert acts[f"blocks.{last}.attn.hook_pattern"].shape[-2:] == (3, 20)


def test_last_positions_refuse_a_loss_and_a_count_below_one():
    model = model_of("gpt2-like")
    tokens = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="loss"):
        model(tokens, return_type="loss", last_positions=1)
    with pytest.raises(ValueError, match="last_positions"):
        model(tokens, last_positions=0)
