"""Tests for helpers.patching: batched activation patching against the one-pass-per-patch loop, the checks
shared by every engine, and the classic transformer_lens.patching names (each map checked entry by entry against
one forward pass per patch with a plain hook).

The reference below is the plain loop of the course's notebooks, written independently of
helpers.patching: for every (layer, position / head), one forward pass on the corrupted tokens with a
hook that copies the clean activation in, then the metric. The models are tiny random ones (3 layers,
LayerNorm, MLPs), with random LayerNorm weights and biases so that nothing is trivially exact.
"""

import pytest
import torch
from patching_setup import BATCH, CASES, POS, TINY, make_model, metric, token_pair

from helpers import patching as P
from helpers import utils
from helpers.patching import (
    PATCH_KINDS,
    PatchingResult,
    activation_patching,
    attribution_patching,
    generic_activation_patch,
    layer_pos_patch_setter,
    path_patching,
)


@torch.no_grad()
def loop_patching(model, corrupted, clean_cache, kind):
    """One forward pass per patch: the reference."""
    cfg = model.cfg
    act = kind.removesuffix("_by_pos")
    by_pos = PATCH_KINDS[kind] != ("layer", "head")
    heads = "head" in PATCH_KINDS[kind]
    out = torch.zeros(cfg.n_layers, POS if by_pos else 1, cfg.n_heads if heads else 1)
    for layer in range(cfg.n_layers):
        name = utils.get_act_name(act, layer)
        for p in range(out.shape[1]):
            for h in range(out.shape[2]):
                where = (slice(None), p if by_pos else slice(None), *([h] if heads else []))

                def hook(activation, hook, where=where):
                    activation[where] = clean_cache[hook.name][where]
                    return activation

                logits = model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])
                out[layer, p, h] = metric(logits)
    return out.reshape(map_shape(model, kind))


def map_shape(model, kind):
    sizes = {"layer": model.cfg.n_layers, "pos": POS, "head": model.cfg.n_heads}
    return tuple(sizes[a] for a in PATCH_KINDS[kind])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is much faster than several (and than fighting over a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models():
    return {False: make_model(), True: make_model(use_attn_result=True)}


# ---------------------------------------------------------------- agreement with the loop


@pytest.mark.parametrize("kind,attn_result", CASES)
def test_batched_equals_loop_with_chunking_and_clean_cache(models, kind, attn_result):
    model = models[attn_result]
    clean, corrupted = token_pair()
    _, clean_cache = model.run_with_cache(clean)
    expected = loop_patching(model, corrupted, clean_cache, kind)
    n_patches = expected.numel()
    max_batch = 3 * BATCH  # 3 copies per pass: chunks cut inside layers too
    assert max_batch // BATCH < n_patches
    result = activation_patching(model, corrupted, clean_cache, metric, kind, max_batch=max_batch)
    assert isinstance(result, PatchingResult)
    assert result.kind == kind
    assert result.values.shape == expected.shape
    torch.testing.assert_close(result.values, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["resid_pre", "mlp_out", "z", "result_by_pos"])
@pytest.mark.parametrize("max_batch", [1, 7, 10_000])
def test_clean_tokens_equal_clean_cache(models, kind, max_batch):
    """Clean tokens (cached inside) give the loop's map; so does any chunking, including one copy per
    pass when the batch alone exceeds max_batch, and everything in one pass."""
    model = models[True]
    clean, corrupted = token_pair()
    _, clean_cache = model.run_with_cache(clean)
    expected = loop_patching(model, corrupted, clean_cache, kind)
    result = activation_patching(model, corrupted, clean, metric, kind, max_batch=max_batch)
    torch.testing.assert_close(result.values, expected, atol=1e-5, rtol=0)


def last_position_metric(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, -1, 1] - logits[:, -1, 2]).mean() + logits[:, -1].log_softmax(-1)[:, 0].mean()


@pytest.mark.parametrize("kind", ["resid_pre", "resid_post", "result", "z_by_pos"])
def test_logits_at_chosen_positions_only(models, kind):
    """With logit_positions=-1 the metric gets [batch 1 d_vocab] and the map is the loop's."""
    model = models[True]
    clean, corrupted = token_pair()
    full = activation_patching(model, corrupted, clean, last_position_metric, kind)
    shapes = set()

    def recording_metric(logits):
        shapes.add(tuple(logits.shape))
        return last_position_metric(logits)

    last = activation_patching(model, corrupted, clean, recording_metric, kind, logit_positions=-1,
                               max_batch=5)
    assert shapes == {(BATCH, 1, TINY["d_vocab"])}
    torch.testing.assert_close(last.values, full.values, atol=1e-5, rtol=0)
    # several positions, in the order given
    pair = activation_patching(model, corrupted, clean, lambda logits: last_position_metric(logits[:, :1]),
                               kind, logit_positions=[POS - 1, 0])
    torch.testing.assert_close(pair.values, full.values, atol=1e-5, rtol=0)
    # the last two: the last block runs its queries and MLP at those two positions only
    two = activation_patching(model, corrupted, clean, lambda logits: last_position_metric(logits[:, 1:]),
                              kind, logit_positions=[-2, -1], max_batch=5)
    torch.testing.assert_close(two.values, full.values, atol=1e-5, rtol=0)


def test_patching_z_or_result_has_the_same_effect(models):
    model = models[True]
    clean, corrupted = token_pair()
    for suffix in ("", "_by_pos"):
        z = activation_patching(model, corrupted, clean, metric, "z" + suffix)
        result = activation_patching(model, corrupted, clean, metric, "result" + suffix)
        torch.testing.assert_close(z.values, result.values, atol=1e-5, rtol=0)


def test_patching_the_whole_stream_restores_the_clean_metric(models):
    """resid_pre of layer 0 patched at a position where clean and corrupted differ changes the metric;
    patching at a position where they agree changes nothing."""
    model = models[False]
    clean, corrupted = token_pair()
    with torch.no_grad():
        corrupted_value = float(metric(model(corrupted)))
    result = activation_patching(model, corrupted, clean, metric, "resid_pre")
    same = [p for p in range(POS) if (clean[:, p] == corrupted[:, p]).all()]
    torch.testing.assert_close(result.values[0, same], torch.full((len(same),), corrupted_value),
                               atol=1e-5, rtol=0)
    assert (result.values[0, 1] - corrupted_value).abs() > 1e-3


def test_axes_and_labels(models):
    model = models[False]
    clean, corrupted = token_pair()
    labels = [f"t{i}" for i in range(POS)]
    result = activation_patching(model, corrupted, clean, metric, "z_by_pos", pos_labels=labels)
    assert list(result.axes) == ["layer", "pos", "head"]
    assert result.axes["layer"] == ["L0", "L1", "L2"]
    assert result.axes["pos"] == labels
    assert result.axes["head"] == ["H0", "H1", "H2", "H3"]
    assert result.shape == (3, POS, 4)
    heads = activation_patching(model, corrupted, clean, metric, "z")
    assert list(heads.axes) == ["layer", "head"] and heads.shape == (3, 4)
    resid = activation_patching(model, corrupted, clean, metric, "resid_post")
    assert resid.axes["pos"] == [str(i) for i in range(POS)]


def test_no_hook_is_left_behind(models):
    model = models[False]
    clean, corrupted = token_pair()
    activation_patching(model, corrupted, clean, metric, "attn_out", max_batch=4)
    assert all(not hp._forward_hooks for hp in model.hook_dict.values())


# ---------------------------------------------------------------- errors


def test_unknown_kind(models):
    clean, corrupted = token_pair()
    with pytest.raises(ValueError, match="Unknown patching kind 'resid'"):
        activation_patching(models[False], corrupted, clean, metric, "resid")


def test_result_needs_use_attn_result(models):
    clean, corrupted = token_pair()
    with pytest.raises(ValueError, match="use_attn_result"):
        activation_patching(models[False], corrupted, clean, metric, "result")


def test_mlp_kinds_need_mlps():
    model = make_model(attn_only=True)
    clean, corrupted = token_pair()
    for kind in ("resid_mid", "mlp_out"):
        with pytest.raises(ValueError, match="attention-only"):
            activation_patching(model, corrupted, clean, metric, kind)


def test_mismatched_shapes(models):
    model = models[False]
    clean, corrupted = token_pair()
    with pytest.raises(ValueError, match="must match"):
        activation_patching(model, corrupted, clean[:, :-1], metric)
    _, short_cache = model.run_with_cache(clean[:1])
    with pytest.raises(ValueError, match="has shape"):
        activation_patching(model, corrupted, short_cache, metric)
    with pytest.raises(ValueError, match="pos_labels"):
        activation_patching(model, corrupted, clean, metric, pos_labels=["a", "b"])


def test_bad_inputs(models):
    model = models[False]
    clean, corrupted = token_pair()
    _, partial_cache = model.run_with_cache(clean, names_filter=lambda n: n.endswith("resid_pre"))
    with pytest.raises(KeyError, match="hook_z"):
        activation_patching(model, corrupted, partial_cache, metric, "z")
    with pytest.raises(TypeError, match="integer token ids"):
        activation_patching(model, corrupted.float(), clean, metric)
    with pytest.raises(TypeError, match="ActivationCache"):
        activation_patching(model, corrupted, "clean prompt", metric)
    with pytest.raises(ValueError, match="max_batch"):
        activation_patching(model, corrupted, clean, metric, max_batch=0)
    for bad in (POS, [], [0, 1.5]):
        with pytest.raises(ValueError, match="logit_positions"):
            activation_patching(model, corrupted, clean, metric, logit_positions=bad)
    with pytest.raises(ValueError, match="scalar"):
        activation_patching(model, corrupted, clean, lambda logits: logits[:, -1, 0])


# ---------------------------------------------------------------- checks shared by every engine

# Each engine called on (model, corrupted tokens, clean cache, metric, **keywords).
ENGINES = {
    "activation_patching": activation_patching,
    "attribution_patching": attribution_patching,
    "path_patching": path_patching,
    "generic_activation_patch": lambda model, corrupted, clean_cache, metric, **kw: generic_activation_patch(
        model, corrupted, clean_cache, metric, layer_pos_patch_setter, "resid_pre", index_axis_names=("layer", "pos"),
        **kw),
}
BATCHED = [name for name in ENGINES if name != "attribution_patching"]  # the engines that take max_batch


@pytest.fixture(scope="module")
def pair(models):
    """The corrupted tokens and the clean run's cache."""
    clean, corrupted = token_pair()
    return corrupted, models[False].run_with_cache(clean)[1]


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_engine_rejects_a_non_model_and_says_which_call(pair, engine):
    corrupted, clean = pair
    with pytest.raises(TypeError, match=rf"model must be a HookedTransformer, got str 'gpt2'\. The call is {engine}\("):
        ENGINES[engine]("gpt2", corrupted, clean, metric)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_engine_rejects_a_metric_that_is_not_a_function_with_one_message(models, pair, engine):
    corrupted, clean = pair
    with pytest.raises(TypeError) as error:
        ENGINES[engine](models[False], corrupted, clean, "logit_diff")
    assert str(error.value) == "metric must be a function logits -> scalar tensor, got str."


@pytest.mark.parametrize("engine", BATCHED)
@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_every_batched_engine_checks_max_batch(models, pair, engine, bad):
    corrupted, clean = pair
    with pytest.raises(ValueError) as error:
        ENGINES[engine](models[False], corrupted, clean, metric, max_batch=bad)
    assert str(error.value) == f"max_batch must be a positive integer, got {bad!r}."


@pytest.mark.parametrize("engine", BATCHED)
def test_every_batched_engine_gives_the_same_map_whatever_max_batch(models, pair, engine):
    """One copy per pass, passes cut inside a layer, everything in one pass: the same map."""
    corrupted, clean = pair
    maps = [ENGINES[engine](models[False], corrupted, clean, metric, max_batch=max_batch)
            for max_batch in (1, 3 * BATCH, 10_000)]
    values = [m.values if isinstance(m, PatchingResult) else m for m in maps]
    for other in values[1:]:
        torch.testing.assert_close(other, values[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("engine", BATCHED)
def test_a_metric_that_is_not_scalar_names_the_patch(models, pair, engine):
    corrupted, clean = pair
    calls = []

    def scalar_then_vector(logits):  # path patching first scores the corrupted run: let that one pass
        calls.append(1)
        return logits[:, -1, 0].mean() if len(calls) == 1 and engine == "path_patching" else logits[:, -1, 0]

    with pytest.raises(ValueError, match=r"must return a scalar, but returned shape \(2,\) on patch \(0, 0\)"):
        ENGINES[engine](models[False], corrupted, clean, scalar_then_vector)


# ---------------------------------------------------------------- the classic transformer_lens.patching names


@pytest.fixture(scope="module")
def classic_setup():
    """A 2-layer float64 model, the corrupted tokens and the clean run's cache."""
    model = make_model(n_layers=2, dtype=torch.float64)
    clean, corrupted = token_pair()
    _, cache = model.run_with_cache(clean)
    return model, corrupted, cache


@torch.no_grad()
def one_patch(model, corrupted, cache, act, layer, where):
    """The metric with the clean activation copied at ``where`` (an index tuple after the batch dim)."""
    name = utils.get_act_name(act, layer)

    def hook(x, hook):
        x[(slice(None), *where)] = cache[name][(slice(None), *where)]

    return float(metric(model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])))


# name -> (activation, axes, where(index) -> the index after the batch dim; the index starts with the layer)
CLASSIC_MAPS = {
    "get_act_patch_resid_pre": ("resid_pre", ("layer", "pos"), lambda i: (i[1],)),
    "get_act_patch_resid_mid": ("resid_mid", ("layer", "pos"), lambda i: (i[1],)),
    "get_act_patch_attn_out": ("attn_out", ("layer", "pos"), lambda i: (i[1],)),
    "get_act_patch_mlp_out": ("mlp_out", ("layer", "pos"), lambda i: (i[1],)),
    "get_act_patch_attn_head_out_by_pos": ("z", ("layer", "pos", "head"), lambda i: (i[1], i[2])),
    "get_act_patch_attn_head_q_by_pos": ("q", ("layer", "pos", "head"), lambda i: (i[1], i[2])),
    "get_act_patch_attn_head_k_by_pos": ("k", ("layer", "pos", "head"), lambda i: (i[1], i[2])),
    "get_act_patch_attn_head_v_by_pos": ("v", ("layer", "pos", "head"), lambda i: (i[1], i[2])),
    "get_act_patch_attn_head_out_all_pos": ("z", ("layer", "head"), lambda i: (slice(None), i[1])),
    "get_act_patch_attn_head_q_all_pos": ("q", ("layer", "head"), lambda i: (slice(None), i[1])),
    "get_act_patch_attn_head_k_all_pos": ("k", ("layer", "head"), lambda i: (slice(None), i[1])),
    "get_act_patch_attn_head_v_all_pos": ("v", ("layer", "head"), lambda i: (slice(None), i[1])),
    "get_act_patch_attn_head_pattern_all_pos": ("pattern", ("layer", "head"), lambda i: (i[1],)),
    "get_act_patch_attn_head_pattern_by_pos": ("pattern", ("layer", "head", "pos"), lambda i: (i[1], i[2])),
    "get_act_patch_attn_head_pattern_dest_src_pos": ("pattern", ("layer", "head", "pos", "pos"),
                                                     lambda i: (i[1], i[2], i[3])),
}


@pytest.mark.parametrize("name", list(CLASSIC_MAPS))
def test_classic_map_equals_one_pass_per_patch(classic_setup, name):
    model, corrupted, cache = classic_setup
    act, axes, where = CLASSIC_MAPS[name]
    out = getattr(P, name)(model, corrupted, cache, metric)
    sizes = {"layer": model.cfg.n_layers, "pos": POS, "head": model.cfg.n_heads}
    assert out.shape == tuple(sizes[a] for a in axes)
    for index in torch.cartesian_prod(*[torch.arange(sizes[a]) for a in axes]).reshape(-1, len(axes)).tolist():
        expected = one_patch(model, corrupted, cache, act, index[0], where(index))
        assert out[tuple(index)].item() == pytest.approx(expected, abs=1e-5), index


def test_every_maps_stack_the_single_maps_in_the_classic_order(classic_setup):
    model, corrupted, cache = classic_setup
    block = P.get_act_patch_block_every(model, corrupted, cache, metric)
    assert block.shape == (3, model.cfg.n_layers, POS)
    torch.testing.assert_close(block[2], P.get_act_patch_mlp_out(model, corrupted, cache, metric))
    heads = P.get_act_patch_attn_head_all_pos_every(model, corrupted, cache, metric)
    assert heads.shape == (5, model.cfg.n_layers, model.cfg.n_heads)
    torch.testing.assert_close(heads[4], P.get_act_patch_attn_head_pattern_all_pos(model, corrupted, cache, metric))
    by_pos = P.get_act_patch_attn_head_by_pos_every(model, corrupted, cache, metric)
    # the pattern map is moved to [layer pos head]
    assert by_pos.shape == (5, model.cfg.n_layers, POS, model.cfg.n_heads)
    pattern = P.get_act_patch_attn_head_pattern_by_pos(model, corrupted, cache, metric)
    torch.testing.assert_close(by_pos[4], pattern.transpose(1, 2))


def test_generic_activation_patch_with_an_index_list_and_errors(classic_setup):
    model, corrupted, cache = classic_setup

    class Rows:  # what generic_activation_patch needs of a DataFrame of indices
        def to_numpy(self):
            return torch.tensor([[1, 4], [0, 3]]).numpy()

    out = P.generic_activation_patch(model, corrupted, cache, metric, P.layer_pos_patch_setter, "resid_post",
                                     index_df=Rows())
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(one_patch(model, corrupted, cache, "resid_post", 1, (4,)), abs=1e-5)
    assert out[1].item() == pytest.approx(one_patch(model, corrupted, cache, "resid_post", 0, (3,)), abs=1e-5)
    with pytest.raises(ValueError, match="exactly one of index_axis_names"):
        P.generic_activation_patch(model, corrupted, cache, metric, P.layer_pos_patch_setter, "resid_post")
    with pytest.raises(ValueError, match="unknown axis 'position'"):
        P.generic_activation_patch(model, corrupted, cache, metric, P.layer_pos_patch_setter, "resid_post",
                                   index_axis_names=("layer", "position"))


CLASSIC = [name for name in dir(P) if name.startswith("get_act_patch_") or name.endswith("_patch_setter")]


def test_classic_functions_carry_their_own_name_and_docstring():
    assert len(CLASSIC) == 24  # 18 maps and 6 patch setters, as in transformer_lens.patching
    for name in CLASSIC:
        function = getattr(P, name)
        assert (function.__name__, function.__qualname__, function.__module__) == (name, name, "helpers.patching")
        assert function.__doc__ and function.__doc__.strip(), name
    docs = [getattr(P, name).__doc__ for name in CLASSIC]
    assert len(set(docs)) == len(docs)  # each says what it patches


@pytest.mark.parametrize("setter,index,where", [
    ("layer_pos_patch_setter", [0, 3], (slice(None), 3)),
    ("layer_pos_head_vector_patch_setter", [0, 3, 1], (slice(None), 3, 1)),
    ("layer_head_vector_patch_setter", [0, 1], (slice(None), slice(None), 1)),
    ("layer_head_pattern_patch_setter", [0, 1], (slice(None), 1)),
    ("layer_head_pos_pattern_patch_setter", [0, 1, 3], (slice(None), 1, 3)),
    ("layer_head_dest_src_pos_pattern_patch_setter", [0, 1, 3, 2], (slice(None), 1, 3, 2)),
])
def test_patch_setters_copy_the_clean_activation_at_the_index_only(setter, index, where):
    corrupted, clean = torch.zeros(2, 5, 4, 5), torch.arange(2 * 5 * 4 * 5.0).reshape(2, 5, 4, 5)
    out = getattr(P, setter)(corrupted, index, clean)
    assert out is corrupted  # in place
    expected = torch.zeros_like(clean)
    expected[where] = clean[where]
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
