"""Hook points: named identity modules where activations can be read or replaced.

A ``HookPoint`` returns its input unchanged. Wrapping an activation in one gives it a name
(its module path, e.g. ``blocks.0.attn.hook_pattern``) and a place to attach functions
``fn(activation, hook)``. ``HookedRootModule`` is the base class of every hooked model: it
names the hook points and runs the model with hooks or with a cache of activations.

Hooks added by ``hooks()``, ``run_with_hooks`` and ``run_with_cache`` are temporary: their forward hooks run
only in the thread that added them (two threads can run hooked forwards on one model), and they are removed
when the call ends, even if a KeyboardInterrupt lands in that cleanup (or, failing that, by the thread's next
hooked call, with a warning). Hooks added by ``add_hook`` apply to every thread until ``reset_hooks()``.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from helpers import checks

NamesFilter = str | Sequence[str] | Callable[[str], bool] | None
HookFn = Callable[..., torch.Tensor | None]

_LOCK = threading.Lock()  # guards the lists of hooks, which several threads may edit at once
_BLOCK_IDS = itertools.count(1)  # the level of each hooks() block: never reused, so threads never share one


@dataclass
class LensHandle:
    """A hook attached to a HookPoint, kept so that it can be removed.

    ``hook`` is torch's handle (``hook.remove()`` detaches it). ``context_level`` identifies the ``hooks()``
    block that added it (None outside any block), so that leaving a block removes its own hooks only.
    ``fn`` is the hook function.
    """

    hook: RemovableHandle
    is_permanent: bool = False
    context_level: int | None = None
    fn: HookFn | None = None


def _same_hook(a: HookFn, b: HookFn) -> bool:
    """Whether ``b`` is ``a``, or the same function defined again (a re-run cell): same code, and the same
    default values and closure values (so hooks made by one factory for different heads differ)."""
    if a is b:
        return True
    code = getattr(a, "__code__", None)
    if code is None or code != getattr(b, "__code__", None):
        return False

    def values(fn) -> list:
        try:
            return [*(fn.__defaults__ or ()), *(c.cell_contents for c in fn.__closure__ or ())]
        except ValueError:  # a closure cell not yet filled: count the functions as different
            return [object()]

    va, vb = values(a), values(b)
    return len(va) == len(vb) and all(x is y for x, y in zip(va, vb, strict=True))


def _to_the_end(fn: Callable[[], None]) -> None:
    """Run ``fn`` (safe to run again) to its end even if KeyboardInterrupts land in it; re-raise the first."""
    interrupt = None
    while True:
        try:
            fn()
        except KeyboardInterrupt as e:
            interrupt = interrupt or e
        else:
            break
    if interrupt is not None:
        raise interrupt


def _caller() -> FrameType:
    """The frame that is entering a ``hooks()`` block (past the block's generator and contextlib)."""
    frame = sys._getframe(2)
    while frame.f_code.co_filename == contextlib.__file__:
        frame = frame.f_back
    return frame


def _check_dir(dir: str, allowed: tuple[str, ...]) -> None:
    if dir not in allowed:
        raise ValueError(f"dir={dir!r} is not a hook direction; pass one of {', '.join(map(repr, allowed))}.")


class HookPoint(nn.Module):
    """An identity module with a name. Hook functions ``fn(activation, hook)`` run on its output."""

    def __init__(self):
        super().__init__()
        self.name: str | None = None
        self.fwd_hooks: list[LensHandle] = []
        self.bwd_hooks: list[LensHandle] = []
        self.ctx: dict = {}  # scratch space that hook functions may share (``hook.ctx``)
        self.hook_conversion = None  # see enable_reshape()

    def add_hook(self, hook: HookFn, dir: str = "fwd", is_permanent: bool = False,
                 level: int | None = None, prepend: bool = False) -> None:
        """Attach ``hook(activation, hook=self)``. Returning None keeps the activation; returning a tensor
        replaces it. ``prepend=True`` runs it before the hooks already attached. A forward hook of a
        ``hooks()`` block (``level`` given) runs only in the thread that adds it."""
        _check_dir(dir, ("fwd", "bwd"))
        owner = threading.get_ident() if level is not None and dir == "fwd" else None

        def run(x: torch.Tensor) -> torch.Tensor | None:
            if owner is not None and threading.get_ident() != owner:
                return None
            conversion = self.hook_conversion
            new = checks.call_hook(hook, x if conversion is None else conversion.convert(x), self)
            if new is not None and conversion is not None:
                new = conversion.revert(new)
            return checks.hook_output(new, x, hook, self.name)

        def backward_hook(module, grad_input, grad_output):
            new = run(grad_output[0])
            return None if new is None else (new,)

        with _LOCK:
            if dir == "fwd":
                handle = self.register_forward_hook(lambda module, inputs, output: run(output), prepend=prepend)
                handles = self.fwd_hooks
            else:
                handle = self.register_full_backward_hook(backward_hook, prepend=prepend)
                handles = self.bwd_hooks
            handles.insert(0 if prepend else len(handles), LensHandle(handle, is_permanent, level, hook))

    def add_perma_hook(self, hook: HookFn, dir: str = "fwd") -> None:
        """A hook that ``remove_hooks()`` keeps unless ``including_permanent=True``."""
        self.add_hook(hook, dir=dir, is_permanent=True)

    def is_hooked(self) -> bool:
        """Whether any hook will run on this point: one added with add_hook, or one registered directly with
        PyTorch's register_forward_hook / register_full_backward_hook (a learner may call them on a HookPoint);
        both kinds end in the module's own hook dicts, which torch offers no public way to read."""
        return bool(self._forward_hooks or self._backward_hooks)

    def only_read(self) -> bool:
        """Whether every hook on this point leaves the activation as it is: no hooks, or only caching hooks (of
        get_caching_hooks, marked ``reads_only``), with no backward hook and no hook registered with PyTorch's own
        functions. The model may then compute what follows without this activation."""
        return (not self._backward_hooks and len(self._forward_hooks) == len(self.fwd_hooks)
                and all(getattr(h.fn, "reads_only", False) for h in self.fwd_hooks))

    def has_hooks(self, dir: str = "both", including_permanent: bool = True, level: int | None = None) -> bool:
        """Whether a hook is attached in direction ``dir`` ("fwd", "bwd", "both"); permanent hooks count only
        if ``including_permanent``; with ``level``, only hooks added by the ``hooks()`` block of that depth."""
        _check_dir(dir, ("fwd", "bwd", "both"))
        handles = (self.fwd_hooks if dir != "bwd" else []) + (self.bwd_hooks if dir != "fwd" else [])
        return any((including_permanent or not h.is_permanent) and (level is None or h.context_level == level)
                   for h in handles)

    def enable_reshape(self, hook_conversion=None) -> None:
        """Let hooks see a converted activation: ``hook_conversion.convert(x)`` is what each hook receives,
        and a tensor the hook returns goes through ``hook_conversion.revert`` before replacing the
        activation. None switches the conversion off."""
        self.hook_conversion = hook_conversion

    def clear_context(self) -> None:
        """Empty ``ctx``."""
        self.ctx = {}

    def remove_hooks(self, dir: str = "fwd", including_permanent: bool = False,
                     level: int | None = None) -> int:
        """Remove the hooks of direction ``dir`` ("fwd", "bwd", "both"). ``including_permanent`` removes them
        all; otherwise permanent hooks stay, and with ``level`` only the hooks of that ``hooks()`` block go.
        Returns how many were removed."""
        _check_dir(dir, ("fwd", "bwd", "both"))
        if not (self.fwd_hooks or self.bwd_hooks):
            return 0

        def keep(handles: list[LensHandle]) -> list[LensHandle]:
            kept = []
            for h in handles:
                if not including_permanent and (h.is_permanent or (level is not None and h.context_level != level)):
                    kept.append(h)
                else:
                    h.hook.remove()
            return kept

        with _LOCK:
            before = len(self.fwd_hooks) + len(self.bwd_hooks)
            if dir in ("fwd", "both") and self.fwd_hooks:
                self.fwd_hooks = keep(self.fwd_hooks)
            if dir in ("bwd", "both") and self.bwd_hooks:
                self.bwd_hooks = keep(self.bwd_hooks)
            return before - len(self.fwd_hooks) - len(self.bwd_hooks)

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
        self._open_blocks: dict[int, tuple[int, FrameType]] = {}  # hooks() blocks: level -> (thread, caller)
        self.is_caching = False  # True while add_caching_hooks() hooks are attached
        for name, module in self.named_modules():
            if name == "":
                continue
            module.name = name
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                self.hook_dict[name] = module

    def hook_points(self) -> Iterable[HookPoint]:
        return self.hook_dict.values()

    @property
    def context_level(self) -> int:
        """How many ``hooks()`` blocks (run_with_hooks and run_with_cache included) this thread has open."""
        me = threading.get_ident()
        return sum(thread == me for thread, _ in list(self._open_blocks.values()))

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
        names = checks.names_filter(names)
        for n in names:
            if n not in self.hook_dict:
                raise self._unknown_name(n)
        return list(names)

    # ----- adding and removing hooks ------------------------------------------------------

    def check_hooks_to_add(self, hook_point: HookPoint, hook_point_name: str, hook: HookFn, dir: str = "fwd",
                           is_permanent: bool = False, prepend: bool = False) -> None:
        """Called before every hook is attached; a subclass overrides it to refuse some hooks."""

    def add_hook(self, name: str | Callable[[str], bool], hook: HookFn, dir: str = "fwd",
                 is_permanent: bool = False, level: int | None = None, prepend: bool = False) -> None:
        """Attach ``hook`` to the hook point ``name`` (or to every point where ``name(point)``). Outside a
        ``hooks()`` block (``level`` None), warns if the same function is already attached there."""
        names = self._select(name)
        if level is None:
            attached = "bwd_hooks" if dir == "bwd" else "fwd_hooks"
            twice = [n for n in names for h in getattr(self.hook_dict[n], attached)
                     if h.context_level is None and _same_hook(h.fn, hook)]
            if twice:
                where = ", ".join(twice[:3]) + (f" and {len(twice) - 3} more" if len(twice) > 3 else "")
                checks.warn(f"Hook {getattr(hook, '__name__', hook)!r} is already attached to {where} (a cell run "
                            "twice?): it now runs twice on every forward pass. Remove the hooks with "
                            "model.reset_hooks() (reset_hooks(including_permanent=True) for permanent ones), then "
                            "add it once.")
        for n in names:
            hp = self.hook_dict[n]
            self.check_hooks_to_add(hp, n, hook, dir=dir, is_permanent=is_permanent, prepend=prepend)
            hp.add_hook(hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)

    def add_perma_hook(self, name: str | Callable[[str], bool], hook: HookFn, dir: str = "fwd") -> None:
        """A hook that ``reset_hooks()`` keeps (remove with ``reset_hooks(including_permanent=True)``)."""
        self.add_hook(name, hook, dir=dir, is_permanent=True)

    def remove_all_hook_fns(self, direction: str = "both", including_permanent: bool = False,
                            level: int | None = None) -> int:
        """Remove the hooks of every hook point (see ``HookPoint.remove_hooks``); returns how many."""
        _check_dir(direction, ("fwd", "bwd", "both"))
        removed = 0
        for hp in self.hook_points():
            if hp.fwd_hooks or hp.bwd_hooks:  # reset_hooks visits every point after each hooked run
                removed += hp.remove_hooks(direction, including_permanent=including_permanent, level=level)
        return removed

    def clear_contexts(self) -> None:
        """Empty the ``ctx`` of every hook point."""
        for hp in self.hook_points():
            if hp.ctx:
                hp.clear_context()

    def reset_hooks(self, clear_contexts: bool = True, direction: str = "both", including_permanent: bool = False,
                    level: int | None = None, verbose: bool = False) -> None:
        """Remove every hook (permanent ones only if ``including_permanent``) and, by default, every ``ctx``.
        ``verbose`` prints how many hooks were removed, and how many permanent ones were kept."""
        if clear_contexts:
            self.clear_contexts()
        removed = self.remove_all_hook_fns(direction, including_permanent, level=level)
        self.is_caching = False
        if verbose:
            kept = sum(len(v) for v in self.list_hooks(dir=direction).values())
            print(f"reset_hooks: removed {removed} hook{'s' * (removed != 1)}, kept {kept} "
                  f"(permanent hooks stay unless including_permanent=True).")

    def list_hooks(self, name_filter: NamesFilter = None, dir: str = "both",
                   including_permanent: bool = True) -> dict[str, list[LensHandle]]:
        """The attached hooks, ``{hook name: [LensHandle, ...]}``, for the points that have some."""
        _check_dir(dir, ("fwd", "bwd", "both"))
        out = {}
        for n in self._select(name_filter):
            hp = self.hook_dict[n]
            handles = (hp.fwd_hooks if dir != "bwd" else []) + (hp.bwd_hooks if dir != "fwd" else [])
            handles = [h for h in handles if including_permanent or not h.is_permanent]
            if handles:
                out[n] = handles
        return out

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple] = (), bwd_hooks: Sequence[tuple] = (),
              reset_hooks_end: bool = True, clear_contexts: bool = False):
        """Context manager: the hooks are attached inside the ``with`` block, removed after it
        (hooks added before the block stay). The forward hooks run only in this thread."""
        fwd_hooks = checks.hook_pairs(fwd_hooks, "fwd_hooks")
        bwd_hooks = checks.hook_pairs(bwd_hooks, "bwd_hooks")
        self._drop_interrupted_blocks()
        level = next(_BLOCK_IDS)
        self._open_blocks[level] = (threading.get_ident(), _caller())

        def close():
            if reset_hooks_end:
                self.reset_hooks(clear_contexts, including_permanent=False, level=level)
            self._open_blocks.pop(level, None)  # last: a block still listed has not finished its cleanup

        try:
            for name, fn in fwd_hooks:
                self.add_hook(name, fn, dir="fwd", level=level)
            for name, fn in bwd_hooks:
                self.add_hook(name, fn, dir="bwd", level=level)
            yield self
        finally:
            _to_the_end(close)

    def _drop_interrupted_blocks(self) -> None:
        """Remove the hooks of this thread's ``hooks()`` blocks whose caller has returned: an interrupt stopped
        their cleanup, and they would stay attached."""
        me = threading.get_ident()
        mine = {level: caller for level, (thread, caller) in list(self._open_blocks.items()) if thread == me}
        if not mine:
            return
        live, frame = set(), sys._getframe(1)
        while frame is not None:
            live.add(id(frame))
            frame = frame.f_back
        stale = [level for level, caller in mine.items() if id(caller) not in live]
        if stale:
            removed = sum(self.remove_all_hook_fns("both", level=level) for level in stale)
            for level in stale:
                self._open_blocks.pop(level, None)
            checks.warn(f"Removed {removed} hook{'s' * (removed != 1)} left attached by an earlier run_with_hooks, "
                        "run_with_cache or model.hooks() call, interrupted as it was removing them.")

    def run_with_hooks(self, *model_args, fwd_hooks: Sequence[tuple] = (), bwd_hooks: Sequence[tuple] = (),
                       reset_hooks_end: bool = True, clear_contexts: bool = False, **model_kwargs):
        """Run the model with ``fwd_hooks=[(name_or_filter, fn), ...]`` attached for this call only."""
        if bwd_hooks and reset_hooks_end:
            checks.warn("Backward hooks run during .backward(), after run_with_hooks returns: pass "
                       "reset_hooks_end=False, call .backward(), then model.reset_hooks().")
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
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
                if t.shape[0] != 1:
                    raise ValueError(f"remove_batch_dim=True keeps the activations of a batch of one prompt, but "
                                     f"{hook.name} has a batch of {t.shape[0]}. Run one prompt at a time, or leave "
                                     "remove_batch_dim=False and index the batch yourself (cache[name][i]).")
                t = t[0]
            cache[hook.name + suffix] = t.to(device) if device is not None else t

        save.reads_only = True  # it changes nothing: see HookPoint.only_read
        fwd = [(n, save) for n in names]
        bwd = [(n, lambda g, hook: save(g, hook, "_grad")) for n in names] if incl_bwd else []
        return cache, fwd, bwd

    def add_caching_hooks(self, names_filter: NamesFilter = None, incl_bwd: bool = False, device=None,
                          remove_batch_dim: bool = False, cache: dict | None = None) -> dict:
        """Attach caching hooks until ``reset_hooks()``; every later run fills the returned dict."""
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim, cache)
        for name, fn in fwd:
            self.add_hook(name, fn, dir="fwd")
        for name, fn in bwd:
            self.add_hook(name, fn, dir="bwd")
        self.is_caching = True
        return cache

    def cache_all(self, cache: dict, incl_bwd: bool = False, device=None, remove_batch_dim: bool = False) -> None:
        """``add_caching_hooks`` on every hook point, into ``cache``."""
        self.add_caching_hooks(None, incl_bwd, device, remove_batch_dim, cache)

    def cache_some(self, cache: dict, names: Callable[[str], bool], incl_bwd: bool = False, device=None,
                   remove_batch_dim: bool = False) -> None:
        """``add_caching_hooks`` on the hook points where ``names(name)`` is true, into ``cache``."""
        self.add_caching_hooks(names, incl_bwd, device, remove_batch_dim, cache)

    def run_with_cache(self, *model_args, names_filter: NamesFilter = None, device=None,
                       remove_batch_dim: bool = False, incl_bwd: bool = False,
                       reset_hooks_end: bool = True, clear_contexts: bool = False, **model_kwargs):
        """Run the model and return ``(output, cache)``: the activations at the chosen hook points, in a dict
        ``{hook name: tensor}`` in the order they were computed (HookedTransformer wraps it in an
        ActivationCache)."""
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim)
        with self.hooks(fwd, bwd, reset_hooks_end, clear_contexts):
            out = self(*model_args, **model_kwargs)
            if incl_bwd:
                out.backward()
        return out, cache
