"""Checks of the arguments learners get wrong, with errors that say what was given, what is expected and
what to do.

Every check here is cheap: type, dtype and shape tests, and one reduction (min and max) over a token tensor.
Errors that can only be diagnosed after the fact (a hook with the wrong signature) are diagnosed only once
the call has failed, so the normal path pays nothing. This module imports no other helpers module.
"""

from __future__ import annotations

import difflib
import inspect
import operator
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

# Frames skipped to attribute a warning to the learner's line: helpers itself, and torch (module calls,
# no_grad decorators) between it and the caller.
_INTERNAL_DIRS = (str(Path(__file__).resolve().parent) + os.sep, str(Path(torch.__file__).resolve().parent) + os.sep)

# ------------------------------------------------------------------------------------------------
# Tokens and text
# ------------------------------------------------------------------------------------------------


def token_ids(tokens, d_vocab: int, what: str = "tokens", ndims: tuple[int, ...] = (1, 2)) -> torch.Tensor:
    """``tokens`` as a tensor of integer ids in [0, d_vocab) with one of the dimensions ``ndims``
    ([pos] or [batch pos] by default); lists and arrays of ints are converted. Raises otherwise."""
    if not isinstance(tokens, torch.Tensor):
        try:
            tokens = torch.as_tensor(tokens)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{what} must be token ids (a tensor of integers [batch pos]), got "
                            f"{_describe(tokens)}. For text, model.to_tokens(text) gives its ids and "
                            "model.to_str_tokens(text) its tokens as strings.") from None
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype in (torch.bool, torch.uint8):
        hint = (" A float tensor [batch pos d_model] is a residual stream: pass it with start_at_layer=..."
                if tokens.dtype.is_floating_point and tokens.ndim == 3 else
                " If these are ids, convert them with .long().")
        raise TypeError(f"{what} must hold integer token ids (torch.long), got dtype {tokens.dtype}.{hint}")
    if tokens.ndim not in ndims:
        shapes = " or ".join({0: "[] (one id)", 1: "[pos]", 2: "[batch pos]"}[n] for n in ndims)
        hint = (" Wrap a single id in a list: torch.tensor([id])." if tokens.ndim == 0 else
                " To batch several to_tokens outputs ([1 pos] each), use torch.cat, not torch.stack, or "
                "tokenize the list of strings at once: model.to_tokens([text1, text2]).")
        raise ValueError(f"{what} must have shape {shapes}, got shape {tuple(tokens.shape)}.{hint}")
    if tokens.numel():
        low, high = (int(x) for x in torch.aminmax(tokens))
        if low < 0 or high >= d_vocab:
            bad = low if low < 0 else high
            raise ValueError(f"{what} holds the token id {bad}, outside the vocabulary: ids go from 0 to "
                             f"{d_vocab - 1} (d_vocab={d_vocab}). Negative ids do not count from the end here; "
                             "take ids from model.to_tokens or model.to_single_token.")
    return tokens


def texts(input, what: str = "input") -> list[str]:
    """A string, or a non-empty list of strings, as a list of strings (what the tokenizer takes)."""
    if isinstance(input, str):
        return [input]
    if isinstance(input, list | tuple) and input and all(isinstance(s, str) for s in input):
        return list(input)
    if isinstance(input, list | tuple) and not input:
        raise ValueError(f"{what} is an empty list: give a string or a list of at least one string.")
    hint = (" These look like token ids already: pass them to the model as a tensor, or read them with "
            "model.to_string / model.to_str_tokens." if _looks_like_ids(input) else "")
    raise TypeError(f"{what} must be a string or a list of strings, got {_describe(input)}.{hint}")


def cut_to_context(tokens: torch.Tensor, n_ctx: int) -> torch.Tensor:
    """tokens [batch pos], tokenized up to n_ctx + 1 tokens: cut to n_ctx, with a warning if that cuts."""
    if tokens.shape[-1] <= n_ctx:
        return tokens
    warn(f"The text is longer than the model's context (n_ctx={n_ctx} tokens, BOS included): to_tokens cut it to "
         f"its first {n_ctx} tokens (truncate=True, the default). Shorten the text, or call to_tokens with "
         "truncate=False to get all its tokens (the model then refuses them).")
    return tokens[..., :n_ctx]


def context_window(tokens: torch.Tensor, n_ctx: int, step: int) -> torch.Tensor:
    """The last n_ctx tokens of tokens [batch pos], for generation step ``step``; warns at the first step
    where the window slides (tokens grow by one per step)."""
    n = tokens.shape[-1]
    if n > n_ctx and (step == 0 or n == n_ctx + 1):
        warn(f"generate: the text has reached the model's context (n_ctx={n_ctx} tokens); from now on each "
             f"new token is predicted from the last {n_ctx} tokens only (a sliding window): the start of the "
             "text is no longer seen. Lower max_new_tokens or shorten the prompt to avoid this.")
    return tokens[:, -n_ctx:]


# ------------------------------------------------------------------------------------------------
# Layers, positions, other arguments
# ------------------------------------------------------------------------------------------------


def integer(value, low: int, high: int, what: str, meaning: str) -> int:
    """``value`` as an int in [low, high] (both included); ``meaning`` says what the range is."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {_describe(value)}.") from None
    if not low <= value <= high:
        raise ValueError(f"{what}={value} is out of range: {meaning}.")
    return value


def forward(return_type, start_at_layer, stop_at_layer, n_layers: int, last_positions=None) -> None:
    """The arguments of a forward pass other than its input."""
    if return_type not in ("logits", "loss", "both", None):
        hint = (" Hooks are given by keyword: run_with_hooks(input, fwd_hooks=[(name, hook)])."
                if isinstance(return_type, list | tuple) else "")
        one_of(return_type, ("logits", "loss", "both", None), "return_type", hint)
    if start_at_layer is not None or stop_at_layer is not None:
        layer_slice(start_at_layer, stop_at_layer, n_layers)
    if last_positions is not None:
        integer(last_positions, 1, sys.maxsize, "last_positions", "it is a number of positions, 1 or more")
        if return_type in ("loss", "both"):
            raise ValueError("last_positions computes the logits of the last positions only, and the loss needs "
                             "every position's: leave last_positions=None for a loss.")


def generate(max_new_tokens, return_type) -> None:
    """The arguments of generate that choose how much to generate and what to return."""
    integer(max_new_tokens, 0, sys.maxsize, "max_new_tokens", "it is a number of tokens, 0 or more")
    one_of(return_type, ("input", "str", "tokens"), "return_type")


def layer_slice(start_at_layer, stop_at_layer, n_layers: int) -> None:
    """start_at_layer and stop_at_layer of a forward pass: each None or in [-n_layers, n_layers]."""
    n = n_layers
    meaning = f"the model has {n} layers, so use 0 to {n} (or -{n} to -1, counted from the end)"
    start = 0 if start_at_layer is None else integer(start_at_layer, -n, n, "start_at_layer", meaning)
    if stop_at_layer is not None:
        stop = integer(stop_at_layer, -n, n, "stop_at_layer", meaning)
        if (stop + n if stop < 0 else stop) < (start + n if start < 0 else start):  # as in blocks[start:stop]
            raise ValueError(f"stop_at_layer={stop_at_layer} comes before start_at_layer={start_at_layer}: no "
                             "block would run. Give a stop_at_layer after the start.")


def residual(input, d_model: int, start_at_layer: int) -> None:
    """The input of a forward pass that starts at a block: a float residual stream [batch pos d_model]."""
    if not (isinstance(input, torch.Tensor) and input.dtype.is_floating_point and input.ndim == 3
            and input.shape[-1] == d_model):
        raise ValueError(f"With start_at_layer={start_at_layer}, input must be the residual stream entering that "
                         f"block, a float tensor [batch pos d_model={d_model}], got {_describe(input)}. For tokens "
                         "or text, leave start_at_layer=None.")


def one_of(value, allowed: Iterable, what: str, hint: str = "") -> None:
    """Raise unless ``value`` is one of ``allowed``, suggesting the closest allowed string."""
    allowed = list(allowed)
    if value not in allowed:
        close = difflib.get_close_matches(value, [a for a in allowed if isinstance(a, str)], n=1) \
            if isinstance(value, str) else []
        hint = f" Did you mean {close[0]!r}?" if close else hint
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}, got {value!r}.{hint}")


def positions(selection, size: int, what: str) -> None:
    """An int or a list/tensor of indices into a dimension of ``size`` entries: each in [-size, size). A slice
    (or a tuple, the classic way to write one) is never out of range."""
    if selection is None or isinstance(selection, slice | tuple):
        return
    index = torch.as_tensor(selection)
    if index.dtype.is_floating_point or index.dtype == torch.bool:
        raise TypeError(f"{what} must be None, an int, a slice or a list of ints, got {_describe(selection)}.")
    if index.numel():
        low, high = (int(x) for x in torch.aminmax(index))
        if low < -size or high >= size:
            raise IndexError(f"{what}={selection!r} is out of range: there are {size} entries, so indices go from "
                             f"0 to {size - 1} (or -{size} to -1 from the end).")


def is_model(model, usage: str) -> None:
    """Raise unless ``model`` is a hooked model (it has a config and run_with_hooks); ``usage`` shows the call."""
    if not (hasattr(model, "cfg") and hasattr(model, "run_with_hooks")):
        raise TypeError(f"model must be a HookedTransformer, got {_describe(model)}. The call is {usage}.")


def device(device) -> None:
    """Raise if torch cannot put a tensor on ``device``, listing the devices of this machine."""
    if device is None:
        return
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError, TypeError) as e:
        available = ["cpu"]
        if torch.cuda.is_available():
            available += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            available.append("mps")
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"device={device!r} is not available on this machine ({why}). Available devices: "
                         f"{', '.join(available)}. Pass one of them, or leave device=None to pick the best "
                         "one.") from None


# ------------------------------------------------------------------------------------------------
# Hooks
# ------------------------------------------------------------------------------------------------


def hook_pairs(pairs, what: str) -> list:
    """fwd_hooks / bwd_hooks: a list of (name or name filter, hook function) pairs."""
    if isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str):
        raise TypeError(f"{what} must be a list of (name, hook) pairs, got a single pair ({pairs[0]!r}, ...): put "
                        f"it in a list, {what}=[(name, hook)].")
    if isinstance(pairs, str) or not isinstance(pairs, Iterable):
        raise TypeError(f"{what} must be a list of (name, hook) pairs, got {_describe(pairs)}.")
    pairs = list(pairs)
    for pair in pairs:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError(f"Each entry of {what} must be a pair (hook name or name filter, hook function), got "
                            f"{_describe(pair)}.")
        name, fn = pair
        if not (isinstance(name, str) or callable(name)):
            raise TypeError(f"In {what}, the first item of a pair must be a hook name or a filter "
                            f"name -> bool, got {_describe(name)}.")
        if not callable(fn):
            raise TypeError(f"In {what}, the hook for {name!r} must be a function fn(activation, hook), got "
                            f"{_describe(fn)}.")
    return pairs


def names_filter(names) -> list:
    """A names_filter that is not None, a string or a function, as a list: it must hold hook names."""
    if isinstance(names, Iterable):
        names = list(names)
        if all(isinstance(n, str) for n in names):
            return names
    raise TypeError(f"names_filter must be None (every hook), a hook name, a list of hook names or a function "
                    f"name -> bool, got {_describe(names)}.")


def call_hook(fn: Callable, activation: torch.Tensor, hook) -> torch.Tensor | None:
    """``fn(activation, hook=hook)``; if that call fails because of fn's signature, say how hooks are called."""
    try:
        return fn(activation, hook=hook)
    except TypeError as e:
        if not callable(fn):
            raise TypeError(f"The hook on {hook.name} is {_describe(fn)}, not a function: hooks are functions "
                            "fn(activation, hook).") from None
        try:
            signature = inspect.signature(fn)
        except ValueError:  # no signature to inspect (a builtin): the error is the hook's own
            raise e from None
        try:
            signature.bind(activation, hook=hook)
        except TypeError:
            raise TypeError(f"Hook {_name(fn)} on {hook.name} has the signature {signature}, but hooks are called "
                            "as fn(activation, hook=hook_point): give it two parameters, the second named "
                            "`hook`, e.g. `def my_hook(activation, hook): ...` (fix extra arguments with "
                            f"functools.partial). The call failed with: {e}") from None
        raise  # the signature fits: the TypeError comes from the hook's body


def hook_output(new, old: torch.Tensor, fn, hook_name: str) -> torch.Tensor | None:
    """What a hook returned: None (keep the activation) or a tensor like the activation."""
    if new is None:
        return None
    where = f"Hook {_name(fn)} on {hook_name}"
    if not isinstance(new, torch.Tensor):
        raise TypeError(f"{where} returned {type(new).__name__}; a hook must return None (keep the activation) "
                        "or a tensor (replace it).")
    if new.shape != old.shape:
        raise ValueError(f"{where} returned a tensor of shape {tuple(new.shape)}, but the activation has shape "
                         f"{tuple(old.shape)}. Edit the activation in place or return a tensor of the same shape.")
    if new.dtype != old.dtype:
        raise TypeError(f"{where} returned a tensor of dtype {new.dtype}, but the activation has dtype {old.dtype}. "
                        f"Return a tensor of the activation's dtype (e.g. new.to(activation.dtype)).")
    if new.device != old.device:
        if new.is_meta:  # no values to move
            raise ValueError(f"{where} returned a tensor on device {new.device}, but the activation is on "
                             f"{old.device}. Return a tensor on the activation's device (e.g. "
                             "new.to(activation.device)).")
        new = new.to(old.device)  # a model spread over devices (device_map): the replacement follows the activation
    return new


# ------------------------------------------------------------------------------------------------
# ActivationCache keys
# ------------------------------------------------------------------------------------------------


def cache_miss(key, name: str, cached: list[str], n_layers: int) -> KeyError:
    """The error for a cache key that is not in the cache: a layer out of range, or the closest names."""
    match = re.match(r"blocks\.(-?\d+)\.", name)
    if match and not 0 <= int(match.group(1)) < n_layers:
        return KeyError(f"cache[{key!r}]: layer {match.group(1)} is out of range; the model has {n_layers} layers, "
                        f"0 to {n_layers - 1} (or -{n_layers} to -1 from the end).")
    close = difflib.get_close_matches(name, cached, n=3, cutoff=0.5)
    hint = f" Closest cached names: {', '.join(close)}." if close else ""
    return KeyError(f"{name!r} is not in the cache ({len(cached)} activations).{hint} "
                    "Was it excluded by names_filter, or is it a hook that needs a config flag?")


# ------------------------------------------------------------------------------------------------
# Shared
# ------------------------------------------------------------------------------------------------


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """A warning attributed to the first caller outside helpers and torch (the learner's line): the one
    warning function of the package."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _name(fn) -> str:
    return repr(getattr(fn, "__name__", fn))


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, list | tuple):
        kinds = sorted({type(v).__name__ for v in x})
        return f"a {type(x).__name__} of {', '.join(kinds)}" if x else f"an empty {type(x).__name__}"
    return f"{type(x).__name__} {x!r}"[:120]


def _looks_like_ids(x) -> bool:
    if isinstance(x, torch.Tensor):
        return not x.dtype.is_floating_point
    return isinstance(x, int) or (isinstance(x, list | tuple) and bool(x) and all(
        isinstance(v, int) or (isinstance(v, list | tuple) and all(isinstance(w, int) for w in v)) for v in x))
