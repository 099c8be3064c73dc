"""Tests for helpers.patching.attribution_patching against the first-order term by finite differences.

The reference is written here, independently of helpers.patching: for each patch, the corrupted run is
moved a small step ``eps`` along (clean - corrupted) on the patched entries only, once each way, and the
central difference of the metric gives its derivative along the patch. Attribution patching claims
metric(corrupted) + that derivative. The models are tiny random ones in float64 (so that the finite
difference is accurate to ~1e-9), with random LayerNorm weights and biases.
"""

import patching_setup
import pytest
import torch
from patching_setup import CASES, POS, metric, token_pair

from helpers import HookedTransformer, utils
from helpers.patching import PATCH_KINDS, PatchingResult, activation_patching, attribution_patching

EPS = 1e-4


def make_model(**overrides) -> HookedTransformer:
    """The shared tiny model in float64, where finite differences are accurate."""
    return patching_setup.make_model(dtype=torch.float64, **overrides)


@torch.no_grad()
def finite_difference_map(model, clean, corrupted, kind):
    """metric(corrupted) + the central difference of the metric along (clean - corrupted), patch by patch."""
    cfg = model.cfg
    act = kind.removesuffix("_by_pos")
    by_pos = PATCH_KINDS[kind] != ("layer", "head")
    heads = "head" in PATCH_KINDS[kind]
    _, clean_cache = model.run_with_cache(clean)
    _, corrupted_cache = model.run_with_cache(corrupted)
    base = metric(model(corrupted)).item()
    out = torch.zeros(cfg.n_layers, POS if by_pos else 1, cfg.n_heads if heads else 1, dtype=torch.float64)
    for layer in range(cfg.n_layers):
        name = utils.get_act_name(act, layer)
        step = clean_cache[name] - corrupted_cache[name]
        for p in range(out.shape[1]):
            for h in range(out.shape[2]):
                where = (slice(None), p if by_pos else slice(None), *([h] if heads else []))
                moved = []
                for sign in (1, -1):

                    def hook(activation, hook, where=where, sign=sign, step=step):
                        activation[where] += sign * EPS * step[where]
                        return activation

                    moved.append(metric(model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)])).item())
                out[layer, p, h] = base + (moved[0] - moved[1]) / (2 * EPS)
    sizes = {"layer": cfg.n_layers, "pos": POS, "head": cfg.n_heads}
    return out.reshape(tuple(sizes[a] for a in PATCH_KINDS[kind])).float()


@pytest.fixture(scope="module")
def models():
    return {False: make_model(), True: make_model(use_attn_result=True)}


@pytest.mark.parametrize("kind,attn_result", CASES)
def test_equals_first_order_term_by_finite_differences(models, kind, attn_result):
    model = models[attn_result]
    clean, corrupted = token_pair()
    expected = finite_difference_map(model, clean, corrupted, kind)
    _, clean_cache = model.run_with_cache(clean)
    result = attribution_patching(model, corrupted, clean_cache, metric, kind)
    assert isinstance(result, PatchingResult)
    assert result.kind == kind
    assert result.values.dtype == torch.float32 and result.values.device.type == "cpu"
    torch.testing.assert_close(result.values, expected, atol=1e-5, rtol=1e-5)


def test_first_order_is_not_the_patch(models):
    """The approximation differs from activation patching on a non-linear model (else the test above
    would not tell a first-order term from the exact effect), but not wildly."""
    model = models[False]
    clean, corrupted = token_pair()
    approx = attribution_patching(model, corrupted, clean, metric, "resid_pre").values
    exact = activation_patching(model, corrupted, clean, metric, "resid_pre").values
    gap = (approx - exact).abs().max().item()
    assert 1e-3 < gap < exact.abs().max().item()


def test_z_and_result_agree(models):
    """result = z @ W_O is linear, so the two first-order maps are the same."""
    model = models[True]
    clean, corrupted = token_pair()
    for kind in ("z", "z_by_pos"):
        z_map = attribution_patching(model, corrupted, clean, metric, kind).values
        result_map = attribution_patching(model, corrupted, clean, metric, kind.replace("z", "result")).values
        torch.testing.assert_close(z_map, result_map, atol=1e-5, rtol=0)


def test_clean_tokens_equal_clean_cache_and_grad_mode_restored(models):
    model = models[False]
    clean, corrupted = token_pair()
    _, clean_cache = model.run_with_cache(clean)
    with torch.no_grad():  # notebooks disable gradients globally: the function must still work
        from_tokens = attribution_patching(model, corrupted, clean, metric, "attn_out", pos_labels=list("abcde"))
        assert not torch.is_grad_enabled()
    from_cache = attribution_patching(model, corrupted, clean_cache, metric, "attn_out")
    torch.testing.assert_close(from_tokens.values, from_cache.values, atol=0, rtol=0)
    assert from_tokens.axes == {"layer": ["L0", "L1", "L2"], "pos": list("abcde")}
    assert all(p.grad is None for p in model.parameters())
    assert not any(hp.fwd_hooks for hp in model.hook_points())


def test_linear_model_is_exact():
    """Without LayerNorm, attention or MLP after the patched point, the model is linear from resid_post of
    the last layer to the logits: with a linear metric the approximation equals the patch."""
    model = make_model(normalization_type=None)
    clean, corrupted = token_pair()

    def linear_metric(logits):
        return (logits[:, -1, 1] - logits[:, -1, 2]).mean()

    approx = attribution_patching(model, corrupted, clean, linear_metric, "resid_post").values
    exact = activation_patching(model, corrupted, clean, linear_metric, "resid_post").values
    torch.testing.assert_close(approx[-1], exact[-1], atol=1e-5, rtol=0)
    assert (approx[0] - exact[0]).abs().max() > 1e-4  # earlier layers go through attention and MLPs


def test_metric_must_be_differentiable(models):
    model = models[False]
    clean, corrupted = token_pair()
    with pytest.raises(TypeError, match="differentiates"):
        attribution_patching(model, corrupted, clean, lambda logits: metric(logits).item())
    with pytest.raises(ValueError, match="scalar"):
        attribution_patching(model, corrupted, clean, lambda logits: logits[:, -1, 0])
    with pytest.raises(ValueError, match="Unknown patching kind"):
        attribution_patching(model, corrupted, clean, metric, "attn")
