"""HookedTransformer's classic methods and arguments that item 3 of issue 31 adds: input_to_embed and the
keywords of a forward that starts inside the model, the set_use_* switches, generate's use_past_kv_cache and its
end-of-text checks, and ``model(x)`` equal to ``run_with_cache(x)``'s logits; weight processing for the new
architecture options."""

import pytest
import torch
from conftest import randomise_

from helpers import HookedTransformer

CFG = dict(n_layers=2, d_model=24, n_ctx=16, d_head=6, n_heads=4, d_mlp=40, d_vocab=30, seed=0, device="cpu")
TOKENS = torch.randint(0, 30, (3, 9), generator=torch.Generator().manual_seed(0))
VARIANTS = {"standard": {}, "attn-only": dict(attn_only=True), "grouped": dict(n_key_value_heads=2),
            "gated": dict(gated_mlp=True, act_fn="silu"), "bidirectional": dict(attention_dir="bidirectional"),
            "shortformer": dict(positional_embedding_type="shortformer"), "LNPre": dict(normalization_type="LNPre")}


def model_with(**fields) -> HookedTransformer:
    model = HookedTransformer({**CFG, **fields})
    randomise_(model)
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_cached_run_gives_the_forward_logits_to_the_bit(variant):
    model = model_with(**VARIANTS[variant])
    logits, cache = model.run_with_cache(TOKENS)
    assert torch.equal(model(TOKENS), logits)
    assert torch.equal(model.run_with_cache(TOKENS, names_filter=lambda n: "pattern" in n)[0], logits)


def test_a_hook_that_edits_the_pattern_still_takes_effect():
    model = model_with()

    def attend_to_bos(pattern, hook):
        pattern.zero_()
        pattern[..., 0] = 1

    edited = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_pattern", attend_to_bos)])
    _, cache = model.run_with_cache(TOKENS)
    assert not torch.allclose(edited, model(TOKENS))
    z_bos = torch.einsum("bkhe->bhe", cache["v", 0][:, :1])  # every position now reads position 0's value
    with model.hooks([("blocks.0.attn.hook_pattern", attend_to_bos)]):
        _, edited_cache = model.run_with_cache(TOKENS)
    torch.testing.assert_close(edited_cache["z", 0], z_bos[:, None].expand(-1, 9, -1, -1))


def test_backward_hooks_on_the_pattern_still_see_gradients():
    model = model_with()
    seen = []
    model.add_hook("blocks.1.attn.hook_pattern", lambda grad, hook: seen.append(grad.shape), dir="bwd")
    model(TOKENS).sum().backward()
    model.reset_hooks()
    assert seen == [torch.Size([3, 4, 9, 9])]


@pytest.mark.parametrize("variant", ["standard", "shortformer"])
def test_input_to_embed_then_start_at_layer_is_the_forward(variant):
    model = model_with(**VARIANTS[variant])
    residual, tokens, positions, mask = model.input_to_embed(TOKENS)
    assert torch.equal(tokens, TOKENS) and mask is None
    assert (positions is None) == (variant == "standard")
    loss = model(residual, start_at_layer=0, tokens=tokens, shortformer_pos_embed=positions, return_type="loss")
    assert torch.equal(loss, model(TOKENS, return_type="loss"))
    middle = model(TOKENS, stop_at_layer=1)
    torch.testing.assert_close(model(middle, start_at_layer=1), model(TOKENS))  # shortformer positions rebuilt
    with pytest.raises(ValueError, match="tokens="):
        model(residual, start_at_layer=0, return_type="loss")


def test_forward_takes_an_attention_mask_that_masks_nothing():
    model = model_with()
    assert torch.equal(model(TOKENS, attention_mask=torch.ones_like(TOKENS)), model(TOKENS))
    padded = torch.ones_like(TOKENS)
    padded[0, :2] = 0
    with pytest.raises(ValueError, match="pads batches on the right"):
        model(TOKENS, attention_mask=padded)


def test_the_set_use_switches_add_their_hook_points_and_keep_the_output():
    model = model_with(n_key_value_heads=2)
    plain = model(TOKENS)
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    logits, cache = model.run_with_cache(TOKENS)
    assert cache["result", 0].shape == (3, 9, 4, 24)
    assert cache["q_input", 0].shape == (3, 9, 4, 24)
    assert cache["k_input", 0].shape == cache["v_input", 0].shape == (3, 9, 2, 24)  # the key/value heads
    assert "blocks.0.hook_mlp_in" in cache
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-5)
    model.set_use_split_qkv_input(False)
    with pytest.raises(ValueError, match="set_use_split_qkv_input"):
        model.set_use_attn_in(True)
    with pytest.raises(ValueError, match="no MLP"):
        model_with(attn_only=True).set_use_hook_mlp_in(True)
    standard = model_with()
    standard.set_use_attn_in(True)
    assert standard.run_with_cache(TOKENS)[1]["attn_in", 0].shape == (3, 9, 4, 24)


def test_generate_gives_the_same_tokens_with_or_without_the_cache_flag():
    model = model_with()
    prompt = TOKENS[:2, :4]
    seen, seen_without = [], []
    kwargs = dict(max_new_tokens=5, do_sample=False, stop_at_eos=False, verbose=False)
    with model.hooks([("hook_embed", lambda x, hook: seen.append(x.shape[1]))]):
        cached = model.generate(prompt, use_past_kv_cache=True, **kwargs)
    with model.hooks([("hook_embed", lambda x, hook: seen_without.append(x.shape[1]))]):
        assert torch.equal(cached, model.generate(prompt, use_past_kv_cache=False, **kwargs))
    assert seen == [4, 1, 1, 1, 1]  # with the cache: the prompt, then each new position once
    assert seen_without == [4, 5, 6, 7, 8]  # without: every step runs every position
    greedy = prompt
    for _ in range(5):
        greedy = torch.cat([greedy, model(greedy)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, greedy)


def test_generate_needs_an_end_of_text_token_to_stop_at():
    model = model_with()
    with pytest.raises(ValueError, match="eos_token_id=<id>, or stop_at_eos=False"):
        model.generate(TOKENS[:1, :3], max_new_tokens=2, verbose=False)
    first = model(TOKENS[:1, :3])[0, -1].argmax().item()
    out = model.generate(TOKENS[:1, :3], max_new_tokens=4, do_sample=False, eos_token_id=[29, first], verbose=False)
    assert out[0, 3:].tolist() == [first]  # a list of ids: any of them ends the sequence


def test_processing_keeps_grouped_and_gated_models_functions():
    tokens = TOKENS
    for fields in (dict(n_key_value_heads=2), dict(n_key_value_heads=1, normalization_type="LNPre"),
                   dict(gated_mlp=True, act_fn="silu", normalization_type="LNPre")):
        model = model_with(**fields)
        before = model(tokens).log_softmax(-1)
        model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True,
                               fold_value_biases=True)
        torch.testing.assert_close(model(tokens).log_softmax(-1), before, rtol=1e-4, atol=1e-4)
        assert not model.blocks[0].attn.b_V.any()  # moved into b_O


def test_processing_refuses_what_would_change_the_function():
    gated = model_with(gated_mlp=True, act_fn="silu")  # LN with a bias, and a gate without one
    with pytest.raises(ValueError, match="W_gate, which has no bias"):
        gated.process_weights_(fold_ln=True)
    with pytest.raises(ValueError, match="grouped-query"):
        model_with(n_key_value_heads=2).process_weights_(refactor_factored_attn_matrices=True)
    shortformer = model_with(positional_embedding_type="shortformer")
    before = shortformer(TOKENS)
    with pytest.warns(UserWarning, match="fold_ln, center_writing_weights, center_unembed: left off"):
        shortformer.process_weights_()
    torch.testing.assert_close(shortformer(TOKENS), before, rtol=1e-5, atol=1e-5)
