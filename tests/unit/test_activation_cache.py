"""Tests for helpers.activation_cache: indexing, and the residual stream decompositions checked against
direct computations (the pieces add up to the residual stream, the logit lens gives the logits, the
logit attributions add up to the logit difference).

Models are float64 with random LayerNorm parameters and random biases. Note that attn_out and mlp_out
include the biases b_O and b_out, so decompose_resid adds up exactly, whereas the head results (z @ W_O)
and neuron results (post * W_out) do not: the tests add b_O and b_out themselves.
"""

import einops
import pytest
import torch
from conftest import randomise_

from helpers import ActivationCache, HookedTransformer, HookedTransformerConfig

TINY = dict(n_layers=3, d_model=16, n_heads=2, d_mlp=24, d_vocab=30, n_ctx=10, seed=0, dtype=torch.float64,
            device="cpu")
B, P, D = 2, 6, 16
PROCESSING = dict(fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True)



def make_model(processed: bool = False, **overrides) -> HookedTransformer:
    model = HookedTransformer(HookedTransformerConfig(**{**TINY, **overrides}))
    randomise_(model)
    return model.process_weights_(**PROCESSING) if processed else model


TOKENS = torch.randint(0, 30, (B, P), generator=torch.Generator().manual_seed(0))


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def raw():
    """An unprocessed model (LN with random weights, random biases), its logits and its cache."""
    model = make_model()
    logits, cache = model.run_with_cache(TOKENS)
    return model, logits, cache


@pytest.fixture(scope="module")
def folded():
    """The same kind of model with fold_ln & co (LNPre): the decompositions are exact there."""
    model = make_model(processed=True)
    logits, cache = model.run_with_cache(TOKENS)
    return model, logits, cache


# ---------------------------------------------------------------- dictionary access


def test_indexing_by_short_names(raw):
    model, _, cache = raw
    d = cache.cache_dict
    assert cache["pattern", 0] is d["blocks.0.attn.hook_pattern"]
    assert cache["pattern", 0, "attn"] is d["blocks.0.attn.hook_pattern"]
    assert cache["attn", 1] is d["blocks.1.attn.hook_pattern"]
    assert cache["resid_post", -1] is d["blocks.2.hook_resid_post"]
    assert cache["q", -2] is d["blocks.1.attn.hook_q"]
    assert cache["scale", 1, "ln2"] is d["blocks.1.ln2.hook_scale"]
    assert cache["normalized", 0] is d["blocks.0.ln1.hook_normalized"]
    assert cache["post", 2] is d["blocks.2.mlp.hook_post"]
    assert cache["embed"] is d["hook_embed"]
    assert cache["scale"] is d["ln_final.hook_scale"]
    assert cache["k2"] is d["blocks.2.attn.hook_k"]
    assert cache["blocks.1.hook_resid_mid"] is d["blocks.1.hook_resid_mid"]


def test_dictionary_methods(raw):
    model, _, cache = raw
    unused = ("_input", "attn_in", "mlp_in", "hook_result")  # hook points that need a config flag
    fired = {name for name in model.hook_dict if not name.endswith(unused)}
    keys = list(cache.keys())
    assert set(keys) == fired and len(cache) == len(fired)
    assert keys[:3] == ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"]  # forward order
    assert keys[-1] == "ln_final.hook_normalized"
    assert list(cache) == [k for k, _ in cache.items()] == keys
    assert all(v is cache[k] for k, v in zip(cache.keys(), cache.values(), strict=True))
    assert ("pattern", 2) in cache and "hook_pos_embed" in cache
    assert ("result", 0) not in cache and "nonsense" not in cache
    assert "ActivationCache" in repr(cache)


def test_missing_activation_error_suggests_names(raw):
    _, _, cache = raw
    with pytest.raises(KeyError, match="blocks.0.attn.hook_pattern"):
        cache["blocks.0.attn.hook_patern"]
    with pytest.raises(KeyError, match="names_filter"):
        cache["result", 0]


def test_remove_batch_dim():
    model = make_model()
    _, cache = model.run_with_cache(TOKENS[:1])
    full = dict(cache.items())
    assert cache.remove_batch_dim() is cache
    assert not cache.has_batch_dim
    for name, value in cache.items():
        assert torch.equal(value, full[name][0])
    _, direct = model.run_with_cache(TOKENS[:1], remove_batch_dim=True)
    assert isinstance(direct, ActivationCache) and not direct.has_batch_dim
    assert list(direct.keys()) == list(cache.keys())
    _, plain = model.run_with_cache(TOKENS[:1], remove_batch_dim=True, return_cache_object=False)
    assert type(plain) is dict and list(plain) == list(cache.keys())
    assert all(torch.equal(direct[k], cache[k]) for k in cache.keys())
    _, batch = model.run_with_cache(TOKENS)
    with pytest.raises(ValueError, match="batch"):
        batch.remove_batch_dim()


def test_to_device():
    model = make_model()
    _, cache = model.run_with_cache(TOKENS, names_filter=lambda n: "resid" in n)
    assert cache.to("meta") is cache
    assert all(v.device.type == "meta" for v in cache.values())


# ---------------------------------------------------------------- accumulated_resid (the logit lens)


def test_accumulated_resid_labels_and_values(raw):
    _, _, cache = raw
    stack, labels = cache.accumulated_resid(return_labels=True)
    assert labels == ["0_pre", "1_pre", "2_pre", "final_post"]
    close(stack, torch.stack([cache["resid_pre", 0], cache["resid_pre", 1], cache["resid_pre", 2],
                              cache["resid_post", 2]]))
    stack, labels = cache.accumulated_resid(incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "2_pre", "2_mid", "final_post"]
    close(stack[3], cache["resid_mid", 1])
    def labels_of(**kwargs):
        return cache.accumulated_resid(return_labels=True, **kwargs)[1]

    assert labels_of(layer=1) == ["0_pre", "1_pre"]
    assert labels_of(layer=1, incl_mid=True) == ["0_pre", "0_mid", "1_pre"]
    assert labels_of(layer=1, mlp_input=True) == ["0_pre", "1_pre", "1_mid"]
    assert labels_of(layer=-1)[-1] == "final_post"
    close(cache.accumulated_resid(pos_slice=-1), cache.accumulated_resid()[:, :, -1])
    close(cache.accumulated_resid(pos_slice=slice(1, 3)), cache.accumulated_resid()[:, :, 1:3])


@pytest.mark.parametrize("pos_slice", [None, -1, [0, 3]])
def test_logit_lens_final_entry_gives_the_logits(folded, pos_slice):
    model, logits, cache = folded
    final = cache.accumulated_resid(apply_ln=True, pos_slice=pos_slice)[-1]
    expected = logits if pos_slice is None else logits[:, pos_slice]
    close(final @ model.W_U + model.b_U, expected)


def test_logit_lens_on_an_unfolded_model(raw):
    model, logits, cache = raw
    final = cache.accumulated_resid(apply_ln=True)[-1]  # before ln_final's weight and bias
    ln = model.ln_final
    close((final * ln.w + ln.b) @ model.W_U + model.b_U, logits)


def test_logit_lens_without_batch_dim(folded):
    model, logits, _ = folded
    _, cache = model.run_with_cache(TOKENS[1:], remove_batch_dim=True)
    final = cache.accumulated_resid(apply_ln=True, pos_slice=-1)[-1]
    close(final @ model.W_U + model.b_U, logits[1, -1])


def test_accumulated_resid_apply_ln_uses_that_layers_norm(folded):
    _, _, cache = folded
    close(cache.accumulated_resid(layer=1, apply_ln=True)[-1], cache["normalized", 1, "ln1"])
    close(cache.accumulated_resid(layer=1, mlp_input=True, apply_ln=True)[-1], cache["normalized", 1, "ln2"])


# ---------------------------------------------------------------- decompose_resid


def test_decompose_resid_labels(raw):
    _, _, cache = raw
    _, labels = cache.decompose_resid(return_labels=True)
    assert labels == ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out",
                      "2_attn_out", "2_mlp_out"]
    assert cache.decompose_resid(mode="attn", return_labels=True)[1] == ["embed", "pos_embed", "0_attn_out",
                                                                        "1_attn_out", "2_attn_out"]
    assert cache.decompose_resid(layer=2, mode="mlp", incl_embeds=False, return_labels=True)[1] == [
        "0_mlp_out", "1_mlp_out"]
    assert cache.decompose_resid(layer=1, mlp_input=True, return_labels=True)[1] == [
        "embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out"]
    with pytest.raises(ValueError, match="mode"):
        cache.decompose_resid(mode="heads")


def test_decompose_resid_adds_up_to_the_residual_stream(raw):
    _, _, cache = raw
    close(cache.decompose_resid().sum(0), cache["resid_post", -1])
    for layer in range(3):
        close(cache.decompose_resid(layer=layer).sum(0), cache["resid_pre", layer])
        close(cache.decompose_resid(layer=layer, mlp_input=True).sum(0), cache["resid_mid", layer])
    close(cache.decompose_resid(pos_slice=2).sum(0), cache["resid_post", -1][:, 2])
    attn = cache.decompose_resid(mode="attn", incl_embeds=False).sum(0)
    close(attn, sum(cache["attn_out", layer] for layer in range(3)))


def test_decompose_resid_apply_ln(folded):
    _, _, cache = folded
    close(cache.decompose_resid(apply_ln=True).sum(0), cache["ln_final.hook_normalized"])
    close(cache.decompose_resid(apply_ln=True, pos_slice=-1).sum(0), cache["ln_final.hook_normalized"][:, -1])
    close(cache.decompose_resid(layer=2, apply_ln=True).sum(0), cache["normalized", 2, "ln1"])
    close(cache.decompose_resid(layer=2, mlp_input=True, apply_ln=True).sum(0), cache["normalized", 2, "ln2"])


# ---------------------------------------------------------------- heads and neurons


def test_stack_head_results_from_z_and_W_O(raw):
    model, _, cache = raw
    stack, labels = cache.stack_head_results(return_labels=True)
    assert labels == [f"L{layer}H{head}" for layer in range(3) for head in range(2)]
    assert stack.shape == (6, B, P, D)
    for layer in range(3):
        for head in range(2):
            expected = cache["z", layer][:, :, head] @ model.W_O[layer, head]
            close(stack[2 * layer + head], expected)


def test_stack_head_results_equals_the_cached_hook_result():
    model = make_model(use_attn_result=True)
    _, cache = model.run_with_cache(TOKENS)
    stack = cache.stack_head_results()
    per_layer = [einops.rearrange(cache["result", layer], "b p h d -> h b p d") for layer in range(3)]
    expected = torch.cat(per_layer)
    assert torch.equal(stack, expected)


def test_heads_and_biases_add_up_to_the_residual_stream(raw):
    model, _, cache = raw
    heads = cache.stack_head_results()
    for layer in range(3):
        close(heads[2 * layer: 2 * layer + 2].sum(0) + model.b_O[layer], cache["attn_out", layer])
    rest = cache["embed"] + cache["pos_embed"] + sum(cache["mlp_out", layer] for layer in range(3))
    close(heads.sum(0) + model.b_O.sum(0) + rest, cache["resid_post", -1])
    with_remainder, labels = cache.stack_head_results(incl_remainder=True, return_labels=True)
    assert labels[-1] == "remainder" and len(with_remainder) == 7
    close(with_remainder[-1], rest + model.b_O.sum(0))
    close(with_remainder.sum(0), cache["resid_post", -1])


def test_stack_head_results_options(folded):
    _, _, cache = folded
    full = cache.stack_head_results()
    close(cache.stack_head_results(layer=1), full[:2])
    close(cache.stack_head_results(pos_slice=-1), full[:, :, -1])
    close(cache.stack_head_results(layer=2, apply_ln=True), cache.apply_ln_to_stack(full[:4], layer=2))
    close(cache.stack_head_results(pos_slice=-1, apply_ln=True),
          cache.apply_ln_to_stack(full[:, :, -1], pos_slice=-1))
    assert cache.stack_head_results(layer=0).shape == (0, B, P, D)
    close(cache.stack_head_results(layer=0, incl_remainder=True)[0], cache["resid_pre", 0])


def test_stack_neuron_results(raw):
    model, _, cache = raw
    stack, labels = cache.stack_neuron_results(return_labels=True)
    assert stack.shape == (3 * 24, B, P, D)
    assert labels[:2] == ["L0N0", "L0N1"] and labels[-1] == "L2N23"
    for layer in range(3):
        neurons = stack[24 * layer: 24 * (layer + 1)]
        close(neurons[5], cache["post", layer][..., 5, None] * model.W_out[layer, 5])
        close(neurons.sum(0) + model.b_out[layer], cache["mlp_out", layer])
    some, labels = cache.stack_neuron_results(layer=2, neuron_slice=slice(3, 6), pos_slice=-1,
                                              return_labels=True)
    assert labels == ["L0N3", "L0N4", "L0N5", "L1N3", "L1N4", "L1N5"]
    close(some, stack[[3, 4, 5, 27, 28, 29], :, -1])
    _, labels = cache.stack_neuron_results(layer=1, neuron_slice=7, return_labels=True)
    assert labels == ["L0N7"]
    with_remainder = cache.stack_neuron_results(incl_remainder=True)
    close(with_remainder.sum(0), cache["resid_post", -1])


def test_stack_neuron_results_needs_an_mlp():
    model = make_model(attn_only=True)
    _, cache = model.run_with_cache(TOKENS)
    with pytest.raises(ValueError, match="attention-only"):
        cache.stack_neuron_results()


# ---------------------------------------------------------------- apply_ln_to_stack and logit_attrs


def test_apply_ln_to_stack_is_the_cached_layer_norm(folded):
    _, _, cache = folded
    for layer in range(3):
        parts = cache.decompose_resid(layer=layer)
        close(cache.apply_ln_to_stack(parts, layer).sum(0), cache["normalized", layer, "ln1"])
    parts = cache.decompose_resid(pos_slice=-1)
    scaled = cache.apply_ln_to_stack(parts, layer=-1, pos_slice=-1)
    centred = parts - parts.mean(-1, keepdim=True)
    close(scaled, centred / cache["ln_final.hook_scale"][:, -1])
    close(cache.apply_ln_to_stack(parts, pos_slice=-1, batch_slice=[1]), scaled[:, [1]])
    close(cache.apply_ln_to_stack(parts, pos_slice=-1, batch_slice=0), scaled[:, 0])


def test_apply_ln_to_stack_without_layer_norm():
    model = make_model(normalization_type=None)
    _, cache = model.run_with_cache(TOKENS)
    parts = cache.decompose_resid()
    assert torch.equal(cache.apply_ln_to_stack(parts), parts)


def test_logit_attrs_add_up_to_the_logit_difference(folded):
    model, logits, cache = folded
    correct, wrong = torch.tensor([3, 7]), torch.tensor([11, 2])
    rows = torch.arange(B)
    logit_diff = logits[rows, -1, correct] - logits[rows, -1, wrong]
    bias_diff = model.b_U[correct] - model.b_U[wrong]
    parts = cache.decompose_resid(pos_slice=-1)
    attrs = cache.logit_attrs(parts, correct, incorrect_tokens=wrong, pos_slice=-1)
    assert attrs.shape == (len(parts), B)
    close(attrs.sum(0) + bias_diff, logit_diff)
    direction = model.W_U[:, correct] - model.W_U[:, wrong]  # [d_model batch]
    scaled = cache.apply_ln_to_stack(parts, pos_slice=-1)
    close(attrs, einops.einsum(scaled, direction, "c b d, d b -> c b"))
    heads = cache.stack_head_results(pos_slice=-1, incl_remainder=True)
    close(cache.logit_attrs(heads, correct, wrong, pos_slice=-1).sum(0) + bias_diff, logit_diff)
    single = cache.logit_attrs(cache.accumulated_resid(pos_slice=-1), 5, pos_slice=-1)
    close(single[-1] + model.b_U[5], logits[:, -1, 5])


def test_cache_type():
    model = make_model()
    _, cache = model.run_with_cache(TOKENS, return_cache_object=False)
    assert isinstance(cache, dict) and not isinstance(cache, ActivationCache)
    _, cache = model.run_with_cache(TOKENS)
    assert isinstance(cache, ActivationCache) and cache.model is model and cache.has_batch_dim
