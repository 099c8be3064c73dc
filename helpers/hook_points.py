"""Hook points: named identity modules where activations can be read or replaced.

A ``HookPoint`` returns its input unchanged. Wrapping an activation in one gives it a name
(its module path, e.g. ``blocks.0.attn.hook_pattern``) and a place to attach functions
``fn(activation, hook)``. ``HookedRootModule`` is the base class of every hooked model: it
names the hook points and runs the model with hooks or with a cache of activations.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from helpers.activation_cache import ActivationCache

NamesFilter = str | Sequence[str] | Callable[[str], bool] | None
HookFn = Callable[..., torch.Tensor | None]


@dataclass
class LensHandle:
    """A hook attached to a HookPoint, kept so that it can be removed.

    ``context_level`` is the depth of the ``hooks()`` block that added it (None outside any block), so
    that leaving a block removes its own hooks only.
    """

    handle: RemovableHandle
    is_permanent: bool
    context_level: int | None


class HookPoint(nn.Module):
    """An identity module with a name. Hook functions ``fn(activation, hook)`` run on its output."""

    def __init__(self):
        super().__init__()
        self.name: str | None = None
        self.fwd_hooks: list[LensHandle] = []
        self.bwd_hooks: list[LensHandle] = []

    def add_hook(self, fn: HookFn, dir: str = "fwd", is_permanent: bool = False,
                 level: int | None = None) -> None:
        """Attach ``fn``. Returning None keeps the activation; returning a tensor replaces it."""
        if dir == "fwd":

            def forward_hook(module, inputs, output):
                return self._checked(fn(output, hook=self), output, fn)

            handle = self.register_forward_hook(forward_hook)
            self.fwd_hooks.append(LensHandle(handle, is_permanent, level))
        elif dir == "bwd":

            def backward_hook(module, grad_input, grad_output):
                new = self._checked(fn(grad_output[0], hook=self), grad_output[0], fn)
                return None if new is None else (new,)

            handle = self.register_full_backward_hook(backward_hook)
            self.bwd_hooks.append(LensHandle(handle, is_permanent, level))
        else:
            raise ValueError(f"dir must be 'fwd' or 'bwd', got {dir!r}")

    def _checked(self, new, old: torch.Tensor, fn) -> torch.Tensor | None:
        if new is None:
            return None
        if not isinstance(new, torch.Tensor):
            raise TypeError(
                f"Hook {getattr(fn, '__name__', fn)!r} on {self.name} returned {type(new).__name__}; "
                "a hook must return None (keep the activation) or a tensor (replace it)."
            )
        if new.shape != old.shape:
            raise ValueError(
                f"Hook {getattr(fn, '__name__', fn)!r} on {self.name} returned a tensor of shape "
                f"{tuple(new.shape)}, but the activation has shape {tuple(old.shape)}. "
                "Edit the activation in place or return a tensor of the same shape."
            )
        return new

    def remove_hooks(self, dir: str = "both", including_permanent: bool = False,
                     level: int | None = None) -> None:
        """Remove the hooks of this point (permanent ones only if ``including_permanent``; with ``level``,
        only those added by the ``hooks()`` block of that depth)."""

        def keep(handles: list[LensHandle]) -> list[LensHandle]:
            kept = []
            for h in handles:
                protected = h.is_permanent and not including_permanent
                if protected or (level is not None and h.context_level != level):
                    kept.append(h)
                else:
                    h.handle.remove()
            return kept

        # Only points that hold hooks are rewritten: reset_hooks visits every point after each run.
        if dir in ("fwd", "both") and self.fwd_hooks:
            self.fwd_hooks = keep(self.fwd_hooks)
        if dir in ("bwd", "both") and self.bwd_hooks:
            self.bwd_hooks = keep(self.bwd_hooks)

    def layer(self) -> int:
        """The block index in the hook's name: ``blocks.3.attn.hook_z`` -> 3."""
        match = re.match(r"blocks\.(\d+)\.", self.name or "")
        if match is None:
            raise ValueError(f"Hook {self.name} is not inside a block, so it has no layer.")
        return int(match.group(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class HookedRootModule(nn.Module):
    """Base class of hooked models. Call ``setup()`` at the end of ``__init__``."""

    def setup(self) -> None:
        """Name every submodule by its path and index the hook points in ``hook_dict``."""
        self.mod_dict: dict[str, nn.Module] = {}
        self.hook_dict: dict[str, HookPoint] = {}
        self.context_level = 0
        for name, module in self.named_modules():
            if name == "":
                continue
            module.name = name
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                self.hook_dict[name] = module

    def hook_points(self) -> Iterable[HookPoint]:
        return self.hook_dict.values()

    # ----- choosing hook points -----------------------------------------------------------

    def _unknown_name(self, name: str) -> KeyError:
        close = difflib.get_close_matches(name, list(self.hook_dict), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return KeyError(
            f"No hook point named {name!r}.{hint} The model has {len(self.hook_dict)} hook points; "
            "list them with `list(model.hook_dict)`."
        )

    def _select(self, names: NamesFilter) -> list[str]:
        """Hook names matching a name, a list of names, a predicate, or None (all)."""
        if names is None:
            return list(self.hook_dict)
        if isinstance(names, str):
            names = [names]
        if callable(names):
            return [n for n in self.hook_dict if names(n)]
        for n in names:
            if n not in self.hook_dict:
                raise self._unknown_name(n)
        return list(names)

    # ----- adding and removing hooks ------------------------------------------------------

    def add_hook(self, name: str | Callable[[str], bool], hook: HookFn, dir: str = "fwd",
                 is_permanent: bool = False, level: int | None = None) -> None:
        """Attach ``hook`` to the hook point ``name`` (or to every point where ``name(point)``)."""
        for n in self._select(name):
            self.hook_dict[n].add_hook(hook, dir=dir, is_permanent=is_permanent, level=level)

    def add_perma_hook(self, name: str | Callable[[str], bool], hook: HookFn, dir: str = "fwd") -> None:
        """A hook that ``reset_hooks()`` keeps (remove with ``reset_hooks(including_permanent=True)``)."""
        self.add_hook(name, hook, dir=dir, is_permanent=True)

    def reset_hooks(self, including_permanent: bool = False, level: int | None = None) -> None:
        """Remove every hook (permanent ones only if ``including_permanent``)."""
        for hp in self.hook_points():
            hp.remove_hooks("both", including_permanent=including_permanent, level=level)

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple] = (), bwd_hooks: Sequence[tuple] = (),
              reset_hooks_end: bool = True):
        """Context manager: the hooks are attached inside the ``with`` block, removed after it
        (hooks added before the block stay)."""
        self.context_level += 1
        level = self.context_level
        try:
            for name, fn in fwd_hooks:
                self.add_hook(name, fn, dir="fwd", level=level)
            for name, fn in bwd_hooks:
                self.add_hook(name, fn, dir="bwd", level=level)
            yield self
        finally:
            if reset_hooks_end:
                self.reset_hooks(including_permanent=False, level=level)
            self.context_level -= 1

    def run_with_hooks(self, *model_args, fwd_hooks: Sequence[tuple] = (), bwd_hooks: Sequence[tuple] = (),
                       reset_hooks_end: bool = True, **model_kwargs):
        """Run the model with ``fwd_hooks=[(name_or_filter, fn), ...]`` attached for this call only."""
        if bwd_hooks and reset_hooks_end:
            warnings.warn(
                "Backward hooks run during .backward(), after run_with_hooks returns: pass "
                "reset_hooks_end=False, call .backward(), then model.reset_hooks().",
                stacklevel=2,
            )
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end):
            return self(*model_args, **model_kwargs)

    # ----- caching ------------------------------------------------------------------------

    def get_caching_hooks(self, names_filter: NamesFilter = None, incl_bwd: bool = False,
                          device=None, remove_batch_dim: bool = False, cache: dict | None = None):
        """Return ``(cache, fwd_hooks, bwd_hooks)``: hooks that store activations into ``cache``."""
        cache = {} if cache is None else cache
        names = self._select(names_filter)

        def save(tensor: torch.Tensor, hook: HookPoint, suffix: str = ""):
            t = tensor.detach()
            if remove_batch_dim:
                t = t[0]
            cache[hook.name + suffix] = t.to(device) if device is not None else t

        fwd = [(n, save) for n in names]
        bwd = [(n, lambda g, hook: save(g, hook, "_grad")) for n in names] if incl_bwd else []
        return cache, fwd, bwd

    def run_with_cache(self, *model_args, names_filter: NamesFilter = None, device=None,
                       remove_batch_dim: bool = False, incl_bwd: bool = False,
                       reset_hooks_end: bool = True, return_cache_object: bool = True, **model_kwargs):
        """Run the model and return ``(output, cache)`` of the activations at the chosen hook points."""
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim)
        with self.hooks(fwd, bwd, reset_hooks_end):
            out = self(*model_args, **model_kwargs)
            if incl_bwd:
                out.backward()
        if return_cache_object:
            cache = ActivationCache(cache, self, has_batch_dim=not remove_batch_dim)
        return out, cache
