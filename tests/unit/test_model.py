"""Tests for helpers.model: HookedTransformer and HookedTransformerConfig.

The forward pass is checked against a reference written here from the parameters with torch's own
functions (F.layer_norm, softmax, a causal mask), on tiny random models whose LayerNorm weights and
biases are randomised too.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import randomise_

from helpers import FactoredMatrix, HookedTransformer, HookedTransformerConfig

TINY = dict(n_layers=2, d_model=16, n_heads=2, d_mlp=32, d_vocab=40, n_ctx=10, seed=0, device="cpu")


def make_model(dtype=torch.float64, **overrides) -> HookedTransformer:
    cfg = HookedTransformerConfig(**{**TINY, "dtype": dtype, **overrides})
    model = HookedTransformer(cfg)
    randomise_(model)
    return model



def tokens_for(model, batch=2, pos=7, seed=0):
    return torch.randint(0, model.cfg.d_vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- an independent forward pass


def reference_logits(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    cfg = model.cfg
    p = dict(model.named_parameters())
    n_pos = tokens.shape[1]

    def norm(x, name):
        if cfg.normalization_type is None:
            return x
        return F.layer_norm(x, x.shape[-1:], p.get(f"{name}.w"), p.get(f"{name}.b"), eps=cfg.eps)

    def act(x, layer):
        if cfg.act_fn == "gelu":
            return F.gelu(x)
        if cfg.act_fn == "gelu_new":
            return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        if cfg.act_fn == "relu":
            return x.clamp(min=0)
        return norm(x * x.softmax(-1), f"blocks.{layer}.mlp.ln")  # solu_ln

    x = p["embed.W_E"][tokens] + p["pos_embed.W_pos"][:n_pos]
    future = torch.triu(torch.ones(n_pos, n_pos, dtype=torch.bool), diagonal=1)
    for layer in range(cfg.n_layers):
        a = f"blocks.{layer}.attn."
        h = norm(x, f"blocks.{layer}.ln1")
        q, k, v = (torch.einsum("bpd,hde->bhpe", h, p[a + f"W_{x}"]) + p[a + f"b_{x}"][:, None]
                   for x in "QKV")
        scores = (q @ k.transpose(-1, -2) / math.sqrt(cfg.d_head)).masked_fill(future, -math.inf)
        z = scores.softmax(-1) @ v  # [batch head pos d_head]
        x = x + torch.einsum("bhpe,hed->bpd", z, p[a + "W_O"]) + p[a + "b_O"]
        if not cfg.attn_only:
            m = f"blocks.{layer}.mlp."
            pre = norm(x, f"blocks.{layer}.ln2") @ p[m + "W_in"] + p[m + "b_in"]
            x = x + act(pre, layer) @ p[m + "W_out"] + p[m + "b_out"]
    return norm(x, "ln_final") @ p["unembed.W_U"] + p["unembed.b_U"]


def label(overrides: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or "default"


ARCHITECTURES = [
    dict(act_fn="gelu_new"),
    dict(act_fn="gelu"),
    dict(act_fn="relu"),
    dict(act_fn="solu_ln"),
    dict(act_fn="solu_ln", normalization_type="LNPre"),
    dict(normalization_type="LNPre"),
    dict(normalization_type=None, act_fn="relu"),
    dict(attn_only=True),
    dict(n_layers=3, n_heads=3, d_head=4, d_mlp=24),
]


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=label)
def test_forward_matches_reference(overrides):
    model = make_model(**overrides)
    tokens = tokens_for(model)
    torch.testing.assert_close(model(tokens), reference_logits(model, tokens), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- hook points and their shapes


def expected_hooks(cfg: HookedTransformerConfig, batch: int, pos: int) -> dict[str, tuple]:
    """The classic hook names that fire in a forward pass, with their shapes."""
    B, P, D, H, E, M = batch, pos, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    per_head_in = cfg.use_split_qkv_input or cfg.use_attn_in
    out = {"hook_embed": (B, P, D), "hook_pos_embed": (B, P, D)}
    for layer in range(cfg.n_layers):
        b = f"blocks.{layer}."
        out[b + "hook_resid_pre"] = (B, P, D)
        if cfg.use_split_qkv_input:
            out |= {b + f"hook_{x}_input": (B, P, H, D) for x in "qkv"}
        if cfg.use_attn_in:
            out[b + "hook_attn_in"] = (B, P, H, D)
        if cfg.normalization_type is not None:
            out[b + "ln1.hook_scale"] = (B, P, H, 1) if per_head_in else (B, P, 1)
            out[b + "ln1.hook_normalized"] = (B, P, H, D) if per_head_in else (B, P, D)
        out |= {b + f"attn.hook_{x}": (B, P, H, E) for x in "qkvz"}
        out |= {b + "attn.hook_attn_scores": (B, H, P, P), b + "attn.hook_pattern": (B, H, P, P)}
        if cfg.use_attn_result:
            out[b + "attn.hook_result"] = (B, P, H, D)
        out[b + "hook_attn_out"] = (B, P, D)
        if not cfg.attn_only:
            out[b + "hook_resid_mid"] = (B, P, D)
            if cfg.use_hook_mlp_in:
                out[b + "hook_mlp_in"] = (B, P, D)
            if cfg.normalization_type is not None:
                out |= {b + "ln2.hook_scale": (B, P, 1), b + "ln2.hook_normalized": (B, P, D)}
            out |= {b + "mlp.hook_pre": (B, P, M), b + "mlp.hook_post": (B, P, M)}
            if cfg.act_fn == "solu_ln":
                out[b + "mlp.hook_mid"] = (B, P, M)
                out |= {b + "mlp.ln.hook_scale": (B, P, 1), b + "mlp.ln.hook_normalized": (B, P, M)}
            out[b + "hook_mlp_out"] = (B, P, D)
        out[b + "hook_resid_post"] = (B, P, D)
    if cfg.normalization_type is not None:
        out |= {"ln_final.hook_scale": (B, P, 1), "ln_final.hook_normalized": (B, P, D)}
    return out


FLAGS = [
    dict(),
    dict(use_attn_result=True),
    dict(use_split_qkv_input=True),
    dict(use_attn_in=True),
    dict(use_hook_mlp_in=True),
    dict(use_attn_result=True, use_split_qkv_input=True, use_hook_mlp_in=True),
]


@pytest.mark.parametrize("overrides", ARCHITECTURES + FLAGS[1:] + [dict(attn_only=True, use_attn_in=True)],
                         ids=label)
def test_every_classic_hook_fires_with_its_shape(overrides):
    model = make_model(**overrides)
    _, cache = model.run_with_cache(tokens_for(model, batch=2, pos=7))
    expected = expected_hooks(model.cfg, 2, 7)
    assert set(cache.keys()) == set(expected)
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
        assert name in model.hook_dict and model.hook_dict[name].name == name


@pytest.mark.parametrize("flags", FLAGS[1:], ids=label)
def test_hook_flags_do_not_change_the_logits(flags):
    base = make_model()
    flagged = HookedTransformer(HookedTransformerConfig(**{**TINY, "dtype": torch.float64, **flags}))
    flagged.load_state_dict(base.state_dict())
    tokens = tokens_for(base)
    torch.testing.assert_close(flagged(tokens), base(tokens), rtol=1e-12, atol=1e-12)


def test_attn_only_model_has_no_mlp_hooks_that_fire():
    model = make_model(attn_only=True)
    assert not any("resid_mid" in name for name in model.hook_dict)
    assert not hasattr(model.blocks[0], "mlp")


def test_hook_result_sums_to_attn_out():
    model = make_model(use_attn_result=True)
    _, cache = model.run_with_cache(tokens_for(model))
    for layer in range(model.cfg.n_layers):
        z, W_O = cache["z", layer], model.blocks[layer].attn.W_O
        torch.testing.assert_close(cache["result", layer], torch.einsum("bphe,hed->bphd", z, W_O))
        torch.testing.assert_close(cache["result", layer].sum(2) + model.b_O[layer],
                                   cache["attn_out", layer])


def test_split_qkv_inputs_can_be_edited_per_head_in_place():
    model = make_model(use_split_qkv_input=True)
    tokens = tokens_for(model)
    _, clean = model.run_with_cache(tokens)

    def zero_head_0(x, hook):
        x[:, :, 0] = 0

    with model.hooks(fwd_hooks=[("blocks.0.hook_q_input", zero_head_0)]):
        _, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(cache["k", 0], clean["k", 0])
    torch.testing.assert_close(cache["v", 0], clean["v", 0])
    torch.testing.assert_close(cache["q", 0][:, :, 1], clean["q", 0][:, :, 1])
    assert not torch.allclose(cache["q", 0][:, :, 0], clean["q", 0][:, :, 0])
    ln1 = model.blocks[0].ln1
    q_of_zero = ln1.b @ model.W_Q[0, 0] + model.b_Q[0, 0]  # LayerNorm maps 0 to its bias
    torch.testing.assert_close(cache["q", 0][:, :, 0], q_of_zero.expand(2, 7, -1))


def test_pos_embed_can_be_edited_in_place():
    model = make_model()
    tokens = tokens_for(model)

    def zero(x, hook):
        x.zero_()

    patched = model.run_with_hooks(tokens, fwd_hooks=[("hook_pos_embed", zero)])
    with torch.no_grad():
        model.pos_embed.W_pos.zero_()
    torch.testing.assert_close(patched, reference_logits(model, tokens))


def test_activations_match_their_definitions():
    model = make_model(act_fn="solu_ln")
    _, cache = model.run_with_cache(tokens_for(model))
    ln1 = model.blocks[1].ln1
    resid = cache["resid_pre", 1]
    variance = resid.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(cache["scale", 1, "ln1"], (variance + 1e-5).sqrt())
    # hook_normalized is taken before the learned weight and bias (seed 001, classic TransformerLens)
    normalized = cache["normalized", 1, "ln1"]
    torch.testing.assert_close(normalized, F.layer_norm(resid, (16,), eps=1e-5))
    assert not torch.allclose(ln1.w, torch.ones_like(ln1.w))  # randomised, so the two meanings differ
    q = (normalized * ln1.w + ln1.b) @ model.W_Q[1, 0] + model.b_Q[1, 0]
    torch.testing.assert_close(cache["q", 1][:, :, 0], q)
    pre = cache["pre", 0]
    torch.testing.assert_close(cache["mid", 0], pre * pre.softmax(-1))
    pattern = cache["pattern", 1]
    torch.testing.assert_close(pattern, cache["attn_scores", 1].softmax(-1))


@pytest.mark.parametrize("act_fn", ["gelu", "gelu_new", "relu"])
def test_mlp_activation_functions(act_fn):
    model = make_model(act_fn=act_fn)
    _, cache = model.run_with_cache(tokens_for(model))
    pre, post = cache["pre", 1], cache["post", 1]
    expected = {
        "gelu": 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2))),
        "gelu_new": 0.5 * pre * (1 + torch.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre**3))),
        "relu": torch.where(pre > 0, pre, 0.0),
    }[act_fn]
    torch.testing.assert_close(post, expected)


def test_attention_pattern_is_causal_and_normalised():
    model = make_model()
    _, cache = model.run_with_cache(tokens_for(model, pos=9))
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 2, 9, dtype=pattern.dtype))
        future = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1)
        assert (pattern[..., future] == 0).all()
        assert (pattern[..., ~future] > 0).all()


# ---------------------------------------------------------------- parameters


def test_parameter_names_and_shapes():
    model = make_model(dtype=torch.float32)
    L, D, H, E, M, V, C = 2, 16, 2, 8, 32, 40, 10
    expected = {"embed.W_E": (V, D), "pos_embed.W_pos": (C, D), "ln_final.w": (D,), "ln_final.b": (D,),
                "unembed.W_U": (D, V), "unembed.b_U": (V,)}
    for layer in range(L):
        b = f"blocks.{layer}."
        expected |= {b + "ln1.w": (D,), b + "ln1.b": (D,), b + "ln2.w": (D,), b + "ln2.b": (D,)}
        expected |= {b + f"attn.W_{x}": (H, D, E) for x in "QKV"} | {b + f"attn.b_{x}": (H, E) for x in "QKV"}
        expected |= {b + "attn.W_O": (H, E, D), b + "attn.b_O": (D,)}
        expected |= {b + "mlp.W_in": (D, M), b + "mlp.b_in": (M,)}
        expected |= {b + "mlp.W_out": (M, D), b + "mlp.b_out": (D,)}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_stacked_weights():
    model = make_model()
    for name in ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"]:
        expected = torch.stack([getattr(block.attn, name) for block in model.blocks])
        torch.testing.assert_close(getattr(model, name), expected, rtol=0, atol=0)
    for name in ["W_in", "W_out", "b_in", "b_out"]:
        expected = torch.stack([getattr(block.mlp, name) for block in model.blocks])
        torch.testing.assert_close(getattr(model, name), expected, rtol=0, atol=0)
    assert model.W_Q.shape == (2, 2, 16, 8) and model.W_O.shape == (2, 2, 8, 16)
    assert model.W_E is model.embed.W_E and model.W_pos is model.pos_embed.W_pos
    assert model.W_U is model.unembed.W_U and model.b_U is model.unembed.b_U


def test_QK_and_OV_circuits():
    model = make_model()
    QK, OV = model.QK, model.OV
    assert isinstance(QK, FactoredMatrix) and isinstance(OV, FactoredMatrix)
    assert QK.shape == OV.shape == (2, 2, 16, 16)
    for layer in range(2):
        for head in range(2):
            attn = model.blocks[layer].attn
            torch.testing.assert_close(QK.AB[layer, head], attn.W_Q[head] @ attn.W_K[head].T)
            torch.testing.assert_close(OV.AB[layer, head], attn.W_V[head] @ attn.W_O[head])


def test_same_seed_same_init():
    a, b = (HookedTransformer(HookedTransformerConfig(**TINY)) for _ in range(2))
    c = HookedTransformer(HookedTransformerConfig(**{**TINY, "seed": 1}))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        if name.split(".")[-1].startswith("W_"):
            assert not torch.equal(pa, pc), name
            assert abs(pa.std().item() - a.cfg.initializer_range) < 0.5 * a.cfg.initializer_range


# ---------------------------------------------------------------- forward options


def test_return_types_and_loss():
    model = make_model()
    tokens = tokens_for(model)
    logits = model(tokens)
    log_probs = logits.log_softmax(-1)
    per_token = -log_probs[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(model(tokens, return_type="loss", loss_per_token=True), per_token)
    direct = F.cross_entropy(logits[:, :-1].reshape(-1, 40), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(model(tokens, return_type="loss"), direct)
    torch.testing.assert_close(model.loss_fn(logits, tokens), direct)
    both_logits, both_loss = model(tokens, return_type="both")
    torch.testing.assert_close(both_logits, logits)
    torch.testing.assert_close(both_loss, direct)
    assert model(tokens, return_type=None) is None
    with pytest.raises(ValueError, match="return_type"):
        model(tokens, return_type="probs")


def test_return_type_none_runs_every_hook_but_not_the_unembedding(monkeypatch):
    model = make_model()
    seen = []
    model.add_hook("ln_final.hook_normalized", lambda x, hook: seen.append(hook.name))

    def unembed(x):
        raise AssertionError("return_type=None computed the logits")

    monkeypatch.setattr(model.unembed, "forward", unembed)
    assert model(tokens_for(model), return_type=None) is None
    assert seen == ["ln_final.hook_normalized"]
    with pytest.raises(AssertionError, match="computed the logits"):
        model(tokens_for(model))


def test_one_dimensional_tokens_are_a_batch_of_one():
    model = make_model()
    tokens = tokens_for(model, batch=1)
    torch.testing.assert_close(model(tokens[0]), model(tokens))


@pytest.mark.parametrize("stop", [0, 1, 2, -1])
def test_stop_at_layer_returns_the_residual_stream(stop):
    model = make_model()
    tokens = tokens_for(model)
    _, cache = model.run_with_cache(tokens)
    expected = cache["resid_post", 1] if stop == 2 else cache["resid_pre", stop]
    torch.testing.assert_close(model(tokens, stop_at_layer=stop), expected)


def test_start_at_layer_continues_from_the_residual_stream():
    model = make_model()
    tokens = tokens_for(model)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(model(cache["resid_pre", 1], start_at_layer=1), logits)


def test_run_with_cache_stop_at_layer_caches_only_what_ran():
    model = make_model()
    tokens = tokens_for(model)
    resid, cache = model.run_with_cache(tokens, stop_at_layer=1)
    assert all(name.startswith(("hook_", "blocks.0.")) for name in cache.keys())
    assert "blocks.0.hook_resid_post" in cache.keys()
    torch.testing.assert_close(resid, cache["resid_post", 0])


def test_context_length_is_checked():
    model = make_model()
    with pytest.raises(ValueError, match="10"):
        model(tokens_for(model, pos=11))


# ---------------------------------------------------------------- config


def test_config_defaults_and_repr():
    cfg = HookedTransformerConfig(n_layers=3, d_model=32, n_ctx=8, n_heads=4, d_vocab=11)
    assert (cfg.d_head, cfg.d_mlp, cfg.d_vocab_out) == (8, 128, 11)
    assert cfg.n_params == 3 * (4 * 32 * 32 + 2 * 32 * 128)
    text = repr(cfg)
    assert text.count("\n") >= 10
    assert "n_layers: 3" in text and "d_head: 8" in text
    assert HookedTransformerConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("bad", [dict(act_fn="swish"), dict(normalization_type="RMSNorm"), dict(n_heads=3),
                                 dict(positional_embedding_type="alibi")])
def test_config_rejects_unsupported_values(bad):
    with pytest.raises(ValueError):
        HookedTransformerConfig(**{**TINY, **bad})


def test_all_head_labels():
    model = make_model(n_layers=2, n_heads=4, d_head=4)
    assert model.all_head_labels() == [f"L{layer}H{head}" for layer in range(2) for head in range(4)]


# ---------------------------------------------------------------- tokenizer (GPT-2, offline)


@pytest.fixture(scope="module")
def gpt2_model():
    return HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, n_ctx=32,
                                                     tokenizer_name="gpt2", seed=0, device="cpu"))


def test_gpt2_tokenizer_is_loaded(gpt2_model):
    assert gpt2_model.cfg.d_vocab == len(gpt2_model.tokenizer) == 50257
    assert gpt2_model.tokenizer.bos_token_id == 50256


def test_to_tokens(gpt2_model):
    encode = gpt2_model.tokenizer.encode
    assert encode("Hello world") == [15496, 995]  # GPT-2's ids
    assert gpt2_model.to_tokens("Hello world").tolist() == [[50256, 15496, 995]]
    assert gpt2_model.to_tokens("Hello world", prepend_bos=False).tolist() == [[15496, 995]]
    batch = gpt2_model.to_tokens(["Hello world, how are you", "Hi"])
    long = [50256] + encode("Hello world, how are you")
    short = [50256] + encode("Hi")
    assert batch.tolist() == [long, short + [50256] * (len(long) - len(short))]  # padded on the right


def test_forward_on_strings(gpt2_model):
    text = "The cat sat"
    torch.testing.assert_close(gpt2_model(text), gpt2_model(gpt2_model.to_tokens(text)))
    torch.testing.assert_close(gpt2_model(text, prepend_bos=False),
                               gpt2_model(gpt2_model.to_tokens(text, prepend_bos=False)))


def test_to_str_tokens_and_to_string(gpt2_model):
    assert gpt2_model.to_str_tokens("Hello world") == ["<|endoftext|>", "Hello", " world"]
    assert gpt2_model.to_str_tokens("Hello world", prepend_bos=False) == ["Hello", " world"]
    assert gpt2_model.to_str_tokens(torch.tensor([15496, 995])) == ["Hello", " world"]
    assert gpt2_model.to_str_tokens([15496, 995]) == ["Hello", " world"]
    assert gpt2_model.to_str_tokens(["Hi", "Hello world"], prepend_bos=False) == [["Hi"], ["Hello", " world"]]
    tokens = gpt2_model.to_tokens("Bonjour à tous")
    assert gpt2_model.to_string(tokens[0, 1:]) == "Bonjour à tous"
    assert gpt2_model.to_string(tokens) == ["<|endoftext|>Bonjour à tous"]
    assert "".join(gpt2_model.to_str_tokens("Bonjour", prepend_bos=False)) == "Bonjour"


def test_single_tokens(gpt2_model):
    assert gpt2_model.to_single_token(" world") == 995
    assert gpt2_model.to_single_str_token(995) == " world"
    with pytest.raises(ValueError, match="Hello"):
        gpt2_model.to_single_token("Hello world")
    with pytest.raises(ValueError):
        gpt2_model.to_single_str_token(50257)


def test_get_token_position(gpt2_model):
    text = "The cat saw the cat"
    str_tokens = gpt2_model.to_str_tokens(text)
    first = str_tokens.index(" cat")
    last = len(str_tokens) - 1 - str_tokens[::-1].index(" cat")
    assert first < last
    assert gpt2_model.get_token_position(" cat", text) == first
    assert gpt2_model.get_token_position(" cat", text, mode="last") == last
    assert gpt2_model.get_token_position(" cat", text, prepend_bos=False) == first - 1
    assert gpt2_model.get_token_position(" cat", gpt2_model.to_tokens(text), mode="last") == last
    with pytest.raises(ValueError, match="dog"):
        gpt2_model.get_token_position(" dog", text)


def test_tokens_to_residual_directions(gpt2_model):
    W_U = gpt2_model.W_U
    torch.testing.assert_close(gpt2_model.tokens_to_residual_directions(" world"), W_U[:, 995])
    torch.testing.assert_close(gpt2_model.tokens_to_residual_directions(995), W_U[:, 995])
    directions = gpt2_model.tokens_to_residual_directions(torch.tensor([[995, 15496]]))
    assert directions.shape == (1, 2, 8)
    torch.testing.assert_close(directions[0, 1], W_U[:, 15496])


def test_generate_from_a_string(gpt2_model):
    text = gpt2_model.generate("Hello", max_new_tokens=4, seed=3, verbose=False)
    assert isinstance(text, str) and text.startswith("Hello")
    assert text == gpt2_model.generate("Hello", max_new_tokens=4, seed=3, verbose=False)
    tokens = gpt2_model.generate("Hello", max_new_tokens=4, seed=3, verbose=False, return_type="tokens")
    assert tokens[0, 0].item() == 50256
    assert gpt2_model.to_string(tokens[0, 1:]) == text


# ---------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def gen_model():
    return make_model(dtype=torch.float32, n_ctx=16)


def greedy(model, tokens, n):
    for _ in range(n):
        tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def test_generate_is_reproducible(gen_model):
    prompt = tokens_for(gen_model, batch=3, pos=4)
    kwargs = dict(max_new_tokens=5, verbose=False, stop_at_eos=False)  # no tokenizer, so no end-of-text token
    a = gen_model.generate(prompt, seed=1, **kwargs)
    assert a.shape == (3, 9) and torch.equal(a[:, :4], prompt)
    assert torch.equal(a, gen_model.generate(prompt, seed=1, **kwargs))
    assert not torch.equal(a, gen_model.generate(prompt, seed=2, **kwargs))
    torch.manual_seed(5)
    b = gen_model.generate(prompt, **kwargs)
    torch.manual_seed(5)
    assert torch.equal(b, gen_model.generate(prompt, **kwargs))


def test_greedy_generation(gen_model):
    prompt = tokens_for(gen_model, batch=2, pos=3)
    expected = greedy(gen_model, prompt, 6)
    kwargs = dict(max_new_tokens=6, verbose=False, stop_at_eos=False)
    assert torch.equal(gen_model.generate(prompt, do_sample=False, **kwargs), expected)
    assert torch.equal(gen_model.generate(prompt, temperature=0.0, **kwargs), expected)
    assert torch.equal(gen_model.generate(prompt, top_k=1, seed=0, **kwargs), expected)


def test_generation_respects_top_k(gen_model):
    prompt = tokens_for(gen_model, batch=1, pos=3).expand(64, -1)
    out = gen_model.generate(prompt, max_new_tokens=3, top_k=3, seed=0, verbose=False, stop_at_eos=False)
    for step in range(3):
        logits = gen_model(out[:, : 3 + step])[:, -1]
        allowed = logits.topk(3, dim=-1).indices
        assert (allowed == out[:, 3 + step, None]).any(-1).all()
    assert len(set(out[:, 3].tolist())) > 1  # it samples, not just argmax


def test_generation_stops_at_eos(gen_model):
    prompt = tokens_for(gen_model, batch=1, pos=3)
    first = greedy(gen_model, prompt, 1)[0, -1].item()
    out = gen_model.generate(prompt, max_new_tokens=5, do_sample=False, eos_token_id=first, verbose=False)
    assert out.tolist() == [prompt[0].tolist() + [first]]


def test_a_transformerlens_state_dict_with_its_attention_buffers_loads():
    """TransformerLens saves each attention's causal mask and IGNORE constant in the state dict (the published
    Othello-GPT file has them); load_state_dict accepts them without reading them, and stays strict otherwise."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_mlp=32, d_vocab=11,
                                  act_fn="gelu", normalization_type="LNPre")
    source = HookedTransformer(cfg)
    with torch.no_grad():
        randomise_(source)
    saved = source.state_dict()
    for layer in range(cfg.n_layers):
        saved[f"blocks.{layer}.attn.mask"] = torch.zeros(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)  # not read
        saved[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(-1e5)
    model = HookedTransformer(cfg)
    model.load_state_dict(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items() if k in model.state_dict())
    assert model.blocks[0].attn.mask.all(-1)[-1] and not model.blocks[0].attn.mask[0, 1]  # still causal
    assert "blocks.0.attn.mask" in saved  # the caller's dict is left as it was
    with pytest.raises(RuntimeError, match="Unexpected key.*attn.bogus"):
        model.load_state_dict({**saved, "blocks.0.attn.bogus": torch.zeros(1)})


def test_a_raw_pytorch_hook_on_the_pattern_is_called():
    """A hook registered with PyTorch's own register_forward_hook on a HookPoint (notebook 02 shows how) must
    run: the attention must not take its fused path, which skips the pattern, because add_hook was not used."""
    model = HookedTransformer(HookedTransformerConfig(n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4,
                                                      d_mlp=32, d_vocab=11, act_fn="gelu"))
    seen = []
    handle = model.blocks[0].attn.hook_pattern.register_forward_hook(lambda module, inputs, output: seen.append(output))
    model(torch.arange(1, 7)[None])
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (1, 4, 6, 6)
    model(torch.arange(1, 7)[None])
    assert len(seen) == 1  # removed with its handle
