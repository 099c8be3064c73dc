"""The classic transformer_lens.patching names: each map is checked, entry by entry, against one forward pass per
patch written here with a plain hook (the reference), on a small random model."""

import pytest
import torch
from conftest import randomise_

from helpers import HookedTransformer, HookedTransformerConfig, utils
from helpers import patching as P

CFG = dict(n_layers=2, d_model=16, n_heads=4, d_mlp=32, d_vocab=30, n_ctx=8, seed=0, dtype=torch.float64)
BATCH, POS = 2, 5


@pytest.fixture(scope="module")
def setup():
    model = HookedTransformer(HookedTransformerConfig(**CFG))
    randomise_(model)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, CFG["d_vocab"], (BATCH, POS), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + 7) % CFG["d_vocab"]
    corrupted[:, 3] = (clean[:, 3] + 3) % CFG["d_vocab"]
    _, cache = model.run_with_cache(clean)
    return model, corrupted, cache


def metric(logits):
    return (logits[:, -1, 1] - logits[:, -1, 2]).mean() + 0.5 * logits[:, 2].log_softmax(-1)[:, 0].sum()


@torch.no_grad()
def one_patch(model, corrupted, cache, act, layer, where):
    """The metric with the clean activation copied at ``where`` (an index tuple after the batch dim)."""
    name = utils.get_act_name(act, layer)

    def hook(x, hook):
        x[(slice(None), *where)] = cache[name][(slice(None), *where)]

    return float(metric(model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])))


# name -> (activation, axes, where(index) -> the index after the batch dim; the index starts with the layer)
CASES = {
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


@pytest.mark.parametrize("name", list(CASES))
def test_classic_map_equals_one_pass_per_patch(setup, name):
    model, corrupted, cache = setup
    act, axes, where = CASES[name]
    out = getattr(P, name)(model, corrupted, cache, metric)
    sizes = {"layer": CFG["n_layers"], "pos": POS, "head": CFG["n_heads"]}
    assert out.shape == tuple(sizes[a] for a in axes)
    for index in torch.cartesian_prod(*[torch.arange(sizes[a]) for a in axes]).reshape(-1, len(axes)).tolist():
        expected = one_patch(model, corrupted, cache, act, index[0], where(index))
        assert out[tuple(index)].item() == pytest.approx(expected, abs=1e-5), index


def test_every_maps_stack_the_single_maps_in_the_classic_order(setup):
    model, corrupted, cache = setup
    block = P.get_act_patch_block_every(model, corrupted, cache, metric)
    assert block.shape == (3, CFG["n_layers"], POS)
    torch.testing.assert_close(block[2], P.get_act_patch_mlp_out(model, corrupted, cache, metric))
    heads = P.get_act_patch_attn_head_all_pos_every(model, corrupted, cache, metric)
    assert heads.shape == (5, CFG["n_layers"], CFG["n_heads"])
    torch.testing.assert_close(heads[4], P.get_act_patch_attn_head_pattern_all_pos(model, corrupted, cache, metric))
    by_pos = P.get_act_patch_attn_head_by_pos_every(model, corrupted, cache, metric)
    assert by_pos.shape == (5, CFG["n_layers"], POS, CFG["n_heads"])  # the pattern map is moved to [layer pos head]
    pattern = P.get_act_patch_attn_head_pattern_by_pos(model, corrupted, cache, metric)
    torch.testing.assert_close(by_pos[4], pattern.transpose(1, 2))


def test_generic_activation_patch_with_an_index_list_and_errors(setup):
    model, corrupted, cache = setup

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
