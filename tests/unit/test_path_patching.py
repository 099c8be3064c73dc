"""Tests for helpers.patching.path_patching against a hand-written three-run implementation.

The reference below follows the definition sender by sender, with plain hooks and no batching: run 1
caches the clean and corrupted runs; run 2, on the corrupted tokens, gives the sender head its clean z
and every other head its corrupted z (MLPs recomputed) and records the receivers' q/k/v (or the
metric, for the final residual stream); run 3, on the corrupted tokens, writes those q/k/v into the
receivers only and reads the metric. Tiny random models with random LayerNorm weights and biases.
"""

import pytest
import torch
from patching_setup import BATCH, make_model, metric, token_pair

from helpers import utils
from helpers.patching import PatchingResult, activation_patching, path_patching


@torch.no_grad()
def three_runs(model, clean, corrupted, receivers, receiver_input):
    """The definition, one sender at a time: [n_layers n_heads]."""
    cfg = model.cfg
    _, clean_cache = model.run_with_cache(clean)
    _, corrupted_cache = model.run_with_cache(corrupted)
    out = torch.zeros(cfg.n_layers, cfg.n_heads)
    for s_layer in range(cfg.n_layers):
        for s_head in range(cfg.n_heads):

            def sender_only(z, hook, s_layer=s_layer, s_head=s_head):
                z[:] = corrupted_cache[hook.name]
                if hook.layer() == s_layer:
                    z[:, :, s_head] = clean_cache[hook.name][:, :, s_head]
                return z

            z_hooks = [(utils.get_act_name("z", layer), sender_only) for layer in range(cfg.n_layers)]
            if receivers is None:
                out[s_layer, s_head] = metric(model.run_with_hooks(corrupted, fwd_hooks=z_hooks))
                continue
            names = [utils.get_act_name(receiver_input, layer) for layer, _ in receivers]
            recorded = {}

            def record(x, hook, recorded=recorded):
                recorded[hook.name] = x.clone()

            model.run_with_hooks(corrupted, fwd_hooks=z_hooks + [(n, record) for n in set(names)])

            def write(x, hook, recorded=recorded, names=names):
                for (_, head), name in zip(receivers, names, strict=True):
                    if name == hook.name:
                        x[:, :, head] = recorded[name][:, :, head]
                return x

            out[s_layer, s_head] = metric(model.run_with_hooks(corrupted,
                                                               fwd_hooks=[(n, write) for n in set(names)]))
    return out


@pytest.fixture(scope="module")
def model():
    return make_model()


RECEIVERS = [
    (None, None),
    ([(1, 0)], "q"),
    ([(2, 3), (1, 0)], "k"),  # two layers: senders of layer 1 reach only the layer-2 receiver
    ([(2, 1), (2, 2)], "v"),
]


@pytest.mark.parametrize("receivers,receiver_input", RECEIVERS)
def test_equals_three_run_definition(model, receivers, receiver_input):
    clean, corrupted = token_pair()
    expected = three_runs(model, clean, corrupted, receivers, receiver_input)
    _, clean_cache = model.run_with_cache(clean)
    result = path_patching(model, corrupted, clean_cache, metric, receivers, receiver_input, max_batch=3 * BATCH)
    assert isinstance(result, PatchingResult)
    assert result.kind == "z" and result.values.shape == (3, 4)
    assert result.axes == {"layer": ["L0", "L1", "L2"], "head": ["H0", "H1", "H2", "H3"]}
    torch.testing.assert_close(result.values, expected, atol=1e-5, rtol=0)
    assert not any(hp.fwd_hooks for hp in model.hook_points())


def test_attention_only_model_and_batch_sizes():
    model = make_model(attn_only=True, d_mlp=None)
    clean, corrupted = token_pair()
    expected = three_runs(model, clean, corrupted, [(2, 0)], "q")
    for max_batch in (1, 10_000):
        result = path_patching(model, corrupted, clean, metric, [(2, 0)], "q", max_batch=max_batch)
        torch.testing.assert_close(result.values, expected, atol=1e-5, rtol=0)


def test_last_layer_to_logits_is_activation_patching(model):
    """Nothing downstream of the last layer's heads to freeze: the path to the logits is the whole effect."""
    clean, corrupted = token_pair()
    path = path_patching(model, corrupted, clean, metric).values
    patch = activation_patching(model, corrupted, clean, metric, "z").values
    torch.testing.assert_close(path[-1], patch[-1], atol=1e-5, rtol=0)
    assert (path[0] - patch[0]).abs().max() > 1e-4  # earlier heads also act through later heads


def test_senders_without_a_path_keep_the_corrupted_metric(model):
    clean, corrupted = token_pair()
    with torch.no_grad():
        corrupted_metric = metric(model(corrupted)).item()
    values = path_patching(model, corrupted, clean, metric, [(1, 2)], "v").values
    assert torch.all(values[1:] == corrupted_metric)
    assert torch.all(values[0] != corrupted_metric)


def test_bad_receivers(model):
    clean, corrupted = token_pair()
    with pytest.raises(ValueError, match="receiver_input must be one of"):
        path_patching(model, corrupted, clean, metric, [(1, 0)])
    with pytest.raises(ValueError, match="needs receiver heads"):
        path_patching(model, corrupted, clean, metric, None, "q")
    with pytest.raises(ValueError, match=r"\(layer, head\) pairs"):
        path_patching(model, corrupted, clean, metric, [(3, 0)], "q")
    with pytest.raises(ValueError, match="empty"):
        path_patching(model, corrupted, clean, metric, [], "q")
    with pytest.raises(ValueError, match="max_batch"):
        path_patching(model, corrupted, clean, metric, max_batch=0)


def test_rejects_a_non_model():
    """Checked before anything reads model.cfg: the message shows the call."""
    clean, corrupted = token_pair()
    with pytest.raises(TypeError, match=r"model must be a HookedTransformer, got dict .*The call is path_patching\("):
        path_patching({"n_layers": 3}, corrupted, clean, metric, [(1, 0)], "q")
