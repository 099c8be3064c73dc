"""Bad inputs get errors (or, for truncations, warnings) that name the argument, what was given, what is
expected and what to do (helpers.checks). One test per mistake, on course-gpt2 as a learner would use it;
each asserts the message, and the last ones check that valid edge cases still run."""

import warnings

import pytest
import torch

from helpers import HookedTransformer, HookedTransformerConfig
from helpers.patching import activation_patching

N_LAYERS, D_VOCAB, N_CTX = 4, 50257, 128
HOOK = "blocks.0.hook_resid_pre"


@pytest.fixture(scope="module")
def model():
    model = HookedTransformer.from_pretrained("course-gpt2", device="cpu")
    assert (model.cfg.n_layers, model.cfg.d_vocab, model.cfg.n_ctx) == (N_LAYERS, D_VOCAB, N_CTX)
    return model


@pytest.fixture(scope="module")
def cache(model):
    return model.run_with_cache("When Mary and John")[1]


def words(n: int) -> str:
    """A text of n tokens: "hello hello ..." (each ' hello' is one token)."""
    return " ".join(["hello"] * n)


def message(error_type, fn, *args, **kwargs) -> str:
    with pytest.raises(error_type) as err:
        fn(*args, **kwargs)
    return str(err.value)


ENTRY_POINTS = {
    "forward": lambda m, tokens: m(tokens),
    "run_with_cache": lambda m, tokens: m.run_with_cache(tokens),
    "run_with_hooks": lambda m, tokens: m.run_with_hooks(tokens, fwd_hooks=[(HOOK, lambda x, hook: None)]),
    "generate": lambda m, tokens: m.generate(tokens, max_new_tokens=1, verbose=False),
}


# ---------------------------------------------------------------- tokens given to the model


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_negative_token_id(model, entry):
    text = message(ValueError, ENTRY_POINTS[entry], model, torch.tensor([[-1, 2]]))
    assert "input holds the token id -1" in text and f"0 to {D_VOCAB - 1}" in text
    assert "do not count from the end" in text


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_token_id_beyond_the_vocabulary(model, entry):
    text = message(ValueError, ENTRY_POINTS[entry], model, torch.tensor([[60000, 2]]))
    assert "token id 60000" in text and f"d_vocab={D_VOCAB}" in text and "model.to_tokens" in text


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_float_tokens(model, entry):
    text = message(TypeError, ENTRY_POINTS[entry], model, torch.tensor([[1.0, 2.0]]))
    assert "input must hold integer token ids" in text and "torch.float32" in text and ".long()" in text


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_tokens_with_three_dimensions(model, entry):
    stacked = torch.stack([model.to_tokens("a b"), model.to_tokens("c d")])  # [2 1 pos]
    text = message(ValueError, ENTRY_POINTS[entry], model, stacked)
    assert "input must have shape [pos] or [batch pos]" in text and f"{tuple(stacked.shape)}" in text
    assert "torch.cat" in text


def test_single_token_id_without_dimension(model):
    text = message(ValueError, model, torch.tensor(5))
    assert "got shape ()" in text and "torch.tensor([id])" in text


def test_float_residual_without_start_at_layer(model):
    text = message(TypeError, model, torch.zeros(1, 3, model.cfg.d_model))
    assert "torch.float32" in text and "start_at_layer" in text


def test_list_of_token_ids_is_not_text(model):
    text = message(TypeError, model, [464, 3290])
    assert "input must be a string or a list of strings, got a list of int" in text
    assert "token ids already" in text and "as a tensor" in text


# ---------------------------------------------------------------- other arguments of the forward pass


@pytest.mark.parametrize("stop", [10, -9])
def test_stop_at_layer_out_of_range(model, stop):
    text = message(ValueError, model, "Hello", stop_at_layer=stop)
    assert f"stop_at_layer={stop} is out of range" in text and f"{N_LAYERS} layers" in text
    assert f"0 to {N_LAYERS}" in text


def test_start_at_layer_out_of_range(model):
    resid = torch.zeros(1, 3, model.cfg.d_model)
    text = message(ValueError, model, resid, start_at_layer=5)
    assert "start_at_layer=5 is out of range" in text and f"{N_LAYERS} layers" in text


def test_stop_at_layer_before_start_at_layer(model):
    resid = torch.zeros(1, 3, model.cfg.d_model)
    text = message(ValueError, model, resid, start_at_layer=2, stop_at_layer=1)
    assert "stop_at_layer=1 comes before start_at_layer=2" in text


def test_stop_at_layer_not_an_integer(model):
    text = message(TypeError, model, "Hello", stop_at_layer=1.5)
    assert "stop_at_layer must be an integer, got float 1.5" in text


def test_tokens_given_with_start_at_layer(model):
    text = message(ValueError, model, model.to_tokens("Hello"), start_at_layer=1)
    assert "With start_at_layer=1, input must be the residual stream" in text
    assert f"d_model={model.cfg.d_model}" in text and "torch.int64" in text


def test_return_type_typo(model):
    text = message(ValueError, model, "Hello", return_type="logit")
    assert "return_type must be one of 'logits', 'loss', 'both', None, got 'logit'" in text
    assert "Did you mean 'logits'?" in text


def test_hooks_given_positionally_to_run_with_hooks(model):
    text = message(ValueError, model.run_with_hooks, "Hello", [(HOOK, lambda x, hook: None)])
    assert "return_type must be one of" in text and "fwd_hooks=[(name, hook)]" in text


# ---------------------------------------------------------------- hooks


def test_hook_returning_the_wrong_dtype(model):
    def to_long(x, hook):
        return x.long()

    text = message(TypeError, model.run_with_hooks, "Hello", fwd_hooks=[(HOOK, to_long)])
    assert f"Hook 'to_long' on {HOOK}" in text and "dtype torch.int64" in text and "torch.float32" in text
    assert "activation.dtype" in text
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_hook_returning_another_device(model):
    text = message(ValueError, model.run_with_hooks, "Hello", fwd_hooks=[(HOOK, lambda x, hook: x.to("meta"))])
    assert f"on {HOOK} returned a tensor on device meta" in text and "is on cpu" in text
    assert "activation.device" in text


def test_hook_with_one_parameter(model):
    text = message(TypeError, model.run_with_hooks, "Hello", fwd_hooks=[(HOOK, lambda x: x)])
    assert f"on {HOOK} has the signature (x)" in text and "fn(activation, hook=hook_point)" in text
    assert "named `hook`" in text


def test_hook_whose_second_parameter_is_not_named_hook(model):
    def ablate(activation, h):
        return activation * 0

    text = message(TypeError, model.run_with_hooks, "Hello", fwd_hooks=[(HOOK, ablate)])
    assert "Hook 'ablate'" in text and "(activation, h)" in text and "named `hook`" in text


def test_type_error_inside_a_hook_is_its_own(model):
    def buggy(activation, hook):
        return activation + "1"

    text = message(TypeError, model.run_with_hooks, "Hello", fwd_hooks=[(HOOK, buggy)])
    assert "signature" not in text and "str" in text


def test_hook_that_is_not_a_function(model):
    text = message(TypeError, model.run_with_hooks, "Hello", fwd_hooks=[(HOOK, 3)])
    assert f"In fwd_hooks, the hook for {HOOK!r} must be a function fn(activation, hook), got int 3" in text


def test_single_hook_pair_not_in_a_list(model):
    text = message(TypeError, model.run_with_hooks, "Hello", fwd_hooks=(HOOK, lambda x, hook: None))
    assert "fwd_hooks must be a list of (name, hook) pairs, got a single pair" in text
    assert "fwd_hooks=[(name, hook)]" in text


def test_names_filter_of_the_wrong_type(model):
    text = message(TypeError, model.run_with_cache, "Hello", names_filter=3)
    assert "names_filter must be None (every hook), a hook name, a list of hook names" in text
    assert "got int 3" in text


# ---------------------------------------------------------------- truncations and windows


def test_text_longer_than_the_context_warns_once(model):
    with pytest.warns(UserWarning) as records:
        logits = model(words(300))
    assert logits.shape[1] == N_CTX
    assert len(records) == 1
    text = str(records[0].message)
    assert f"n_ctx={N_CTX}" in text and f"cut it to its first {N_CTX} tokens" in text and "truncate=False" in text
    assert records[0].filename == __file__  # attributed to the caller's line, not to helpers


def test_text_within_the_context_does_not_warn(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.to_tokens(words(N_CTX - 1)).shape[1] == N_CTX  # BOS + 127 tokens: exactly n_ctx


def test_generate_past_the_context_warns_once(model):
    prompt = model.to_tokens(words(N_CTX - 2))  # BOS + n_ctx - 2 = 127 tokens: step 2 sees 129, the window slides
    with pytest.warns(UserWarning) as records:
        out = model.generate(prompt, max_new_tokens=6, stop_at_eos=False, do_sample=False, verbose=False)
    assert out.shape[1] == N_CTX + 5
    assert len(records) == 1
    text = str(records[0].message)
    assert f"n_ctx={N_CTX}" in text and f"last {N_CTX} tokens only" in text and "sliding window" in text


def test_generate_up_to_the_context_does_not_warn(model):
    prompt = model.to_tokens(words(N_CTX - 2))  # 127 tokens; the second and last step sees 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model.generate(prompt, max_new_tokens=2, stop_at_eos=False, do_sample=False, verbose=False)
    assert out.shape[1] == N_CTX + 1


# ---------------------------------------------------------------- loading


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_from_pretrained_on_cuda_without_cuda():
    text = message(ValueError, HookedTransformer.from_pretrained, "course-gpt2", device="cuda")
    assert "device='cuda' is not available on this machine" in text and "Available devices: cpu" in text
    assert "device=None" in text


def test_from_pretrained_on_an_unknown_device():
    text = message(ValueError, HookedTransformer.from_pretrained, "course-gpt2", device="gpu")
    assert "device='gpu' is not available" in text and "Available devices: cpu" in text


def test_config_on_an_unknown_device():
    cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_heads=2, d_vocab=10, n_ctx=4, device="gpu")
    text = message(ValueError, HookedTransformer, cfg)
    assert "device='gpu' is not available" in text and "Available devices: cpu" in text


# ---------------------------------------------------------------- tokenizer methods


def test_to_tokens_of_token_ids(model):
    text = message(TypeError, model.to_tokens, torch.tensor([464, 3290]))
    assert "input must be a string or a list of strings, got a tensor of shape (2,)" in text
    assert "model.to_string" in text


def test_to_tokens_of_an_empty_list(model):
    assert "input is an empty list" in message(ValueError, model.to_tokens, [])


def test_to_string_of_text(model):
    text = message(TypeError, model.to_string, "Hello")
    assert "tokens must be token ids (a tensor of integers [batch pos]), got str 'Hello'" in text
    assert "model.to_str_tokens(text)" in text


def test_to_string_of_an_id_beyond_the_vocabulary(model):
    text = message(ValueError, model.to_string, [60000])
    assert "tokens holds the token id 60000" in text and f"0 to {D_VOCAB - 1}" in text


def test_to_str_tokens_of_a_negative_id(model):
    text = message(ValueError, model.to_str_tokens, torch.tensor([-1, 5]))
    assert "input holds the token id -1" in text


def test_to_str_tokens_of_float_ids(model):
    text = message(TypeError, model.to_str_tokens, torch.tensor([1.5]))
    assert "input must hold integer token ids" in text and "torch.float32" in text


def test_to_str_tokens_of_something_else(model):
    text = message(TypeError, model.to_str_tokens, {"a": 1})
    assert "input must be token ids" in text and "got dict" in text


def test_token_direction_of_a_negative_id(model):
    text = message(ValueError, model.tokens_to_residual_directions, -1)
    assert "tokens holds the token id -1" in text


# ---------------------------------------------------------------- generate


def test_generate_negative_max_new_tokens(model):
    text = message(ValueError, model.generate, "Hello", max_new_tokens=-1, verbose=False)
    assert "max_new_tokens=-1 is out of range" in text and "0 or more" in text


def test_generate_return_type_typo(model):
    text = message(ValueError, model.generate, "Hello", max_new_tokens=1, return_type="string", verbose=False)
    assert "return_type must be one of 'input', 'str', 'tokens', got 'string'" in text


# ---------------------------------------------------------------- ActivationCache


def test_cache_unknown_short_name(cache):
    text = message(ValueError, cache.__getitem__, ("patern", 0))
    assert "Unknown activation name 'patern'. Did you mean 'pattern'?" in text and "full hook names" in text


@pytest.mark.parametrize("layer", [5, -5])
def test_cache_layer_out_of_range(cache, layer):
    text = message(KeyError, cache.__getitem__, ("pattern", layer))
    assert f"cache[('pattern', {layer})]: layer {layer} is out of range" in text
    assert f"{N_LAYERS} layers, 0 to {N_LAYERS - 1}" in text


def test_cache_full_name_with_a_layer_out_of_range(cache):
    text = message(KeyError, cache.__getitem__, "blocks.7.attn.hook_pattern")
    assert "layer 7 is out of range" in text


def test_cache_key_tuple_of_the_wrong_length(cache):
    text = message(TypeError, cache.__getitem__, ("pattern",))
    assert "(name, layer[, layer_type])" in text and "('pattern',)" in text


@pytest.mark.parametrize("method", ["accumulated_resid", "decompose_resid", "stack_head_results"])
def test_cache_method_layer_out_of_range(cache, method):
    text = message(ValueError, getattr(cache, method), layer=5)
    assert "layer=5 is out of range" in text and f"0 to {N_LAYERS}" in text and f"-{N_LAYERS + 1} to -1" in text


def test_cache_pos_slice_out_of_range(cache):
    n_pos = cache["resid_pre", 0].shape[1]
    text = message(IndexError, cache.accumulated_resid, pos_slice=99)
    assert f"pos_slice=99 is out of range: there are {n_pos} entries" in text


def test_cache_batch_slice_out_of_range(cache):
    stack = cache.accumulated_resid()
    text = message(IndexError, cache.apply_ln_to_stack, stack, batch_slice=[0, 3])
    assert "batch_slice=[0, 3] is out of range: there are 1 entries" in text


# ---------------------------------------------------------------- patching


def test_patching_with_model_and_tokens_swapped(model, cache):
    tokens = model.to_tokens("When Mary and John")
    text = message(TypeError, activation_patching, tokens, model, cache, lambda logits: logits.sum())
    assert "model must be a HookedTransformer, got a tensor" in text
    assert "activation_patching(model, corrupted_tokens, clean, metric" in text


def test_patching_corrupted_tokens_out_of_the_vocabulary(model, cache):
    tokens = model.to_tokens("When Mary and John")
    tokens[0, 1] = -3
    text = message(ValueError, activation_patching, model, tokens, cache, lambda logits: logits.sum())
    assert "corrupted_tokens holds the token id -3" in text


def test_patching_metric_that_is_not_a_function(model, cache):
    tokens = model.to_tokens("When Mary and John")
    text = message(TypeError, activation_patching, model, tokens, cache, "logit_diff")
    assert "metric must be a function logits -> scalar tensor, got str" in text


# ---------------------------------------------------------------- valid edge cases still run


def test_valid_edge_cases_pass_the_checks(model, cache):
    tokens = model.to_tokens("When Mary and John")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = model(tokens)
        torch.testing.assert_close(model(tokens[0]), logits)  # [pos]
        torch.testing.assert_close(model(tokens.int()), logits)  # int32 ids
        for stop in (0, N_LAYERS, -1, -N_LAYERS):
            assert model(tokens, stop_at_layer=stop).shape == (*tokens.shape, model.cfg.d_model)
        resid = model(tokens, stop_at_layer=1)
        torch.testing.assert_close(model(resid, start_at_layer=1), logits)
        torch.testing.assert_close(model(resid, start_at_layer=1 - N_LAYERS), logits)
        assert cache["pattern", -1] is cache[f"blocks.{N_LAYERS - 1}.attn.hook_pattern"]
        assert cache.accumulated_resid(layer=-1).shape[0] == N_LAYERS + 1  # each resid_pre, then the final one
        assert model.to_str_tokens([464, 3290]) == model.to_str_tokens(torch.tensor([464, 3290]))
        assert model.to_string(torch.tensor(464)) == model.to_str_tokens([464])[0]
        assert model.generate(tokens, max_new_tokens=0, verbose=False).shape == tokens.shape
