"""Classic HookPoint / HookedRootModule behaviours beyond run_with_hooks and run_with_cache: has_hooks and its
filters, prepend, reshape conversions, ctx, list_hooks, add_caching_hooks, and clear errors on a bad direction."""

import pytest
import torch
from torch import nn

from helpers import HookedRootModule, HookPoint


def keep(x, hook):
    return None


class Doubler(HookedRootModule):
    """x -> 2 * x with a hook point before and after the doubling."""

    def __init__(self):
        super().__init__()
        self.hook_in = HookPoint()
        self.hook_out = HookPoint()
        self.setup()

    def forward(self, x):
        return self.hook_out(2 * self.hook_in(x))


def test_has_hooks_filters_by_direction_permanence_and_level():
    hp = HookPoint()
    assert not hp.has_hooks()
    hp.add_hook(keep, dir="fwd", is_permanent=True, level=None)
    hp.add_hook(keep, dir="bwd", level=2)
    assert hp.has_hooks() and hp.has_hooks("fwd") and hp.has_hooks("bwd")
    assert not hp.has_hooks("fwd", including_permanent=False)  # the only fwd hook is permanent
    assert hp.has_hooks("bwd", including_permanent=False)
    assert hp.has_hooks(level=2) and not hp.has_hooks(level=1)
    assert not hp.has_hooks("fwd", level=2)  # level 2 holds a bwd hook only
    hp.remove_hooks("both")  # permanent hook stays
    assert hp.has_hooks("fwd") and not hp.has_hooks("bwd")
    hp.remove_hooks("both", including_permanent=True)
    assert not hp.has_hooks()


def test_prepend_runs_first():
    order = []
    hp = HookPoint()
    hp.add_hook(lambda x, hook: order.append("first added"))
    hp.add_hook(lambda x, hook: order.append("prepended"), prepend=True)
    hp(torch.zeros(1))
    assert order == ["prepended", "first added"]
    assert len(hp.fwd_hooks) == 2 and hp.fwd_hooks[0].hook.id != hp.fwd_hooks[1].hook.id


def test_model_add_hook_prepend_and_list_hooks():
    model = Doubler()
    seen = []
    model.add_hook("hook_out", lambda x, hook: x + 1)
    model.add_hook("hook_out", lambda x, hook: seen.append(x.item()), prepend=True)  # sees 2 * 3, before the +1
    assert model(torch.tensor(3.0)).item() == 7.0
    assert seen == [6.0]
    assert list(model.list_hooks()) == ["hook_out"] and len(model.list_hooks()["hook_out"]) == 2
    assert model.list_hooks("hook_in") == {}


class TimesTen:
    """A conversion: hooks see x * 10; what they return is divided by 10."""

    def convert(self, x):
        return x * 10

    def revert(self, x):
        return x / 10


def test_enable_reshape_converts_for_the_hook_and_reverts_its_result():
    hp = HookPoint()
    hp.enable_reshape(TimesTen())
    seen = []
    hp.add_hook(lambda x, hook: seen.append(x.clone()))  # returns None: the activation is untouched
    hp.add_hook(lambda x, hook: x + 5)
    out = hp(torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(seen[0], torch.tensor([10.0, 20.0]))
    torch.testing.assert_close(out, torch.tensor([1.5, 2.5]))  # (x * 10 + 5) / 10
    hp.enable_reshape(None)
    torch.testing.assert_close(hp(torch.tensor([1.0, 2.0])), torch.tensor([6.0, 7.0]))


def test_ctx_is_shared_between_runs_and_cleared_by_reset_hooks():
    model = Doubler()

    def count(x, hook):
        hook.ctx["calls"] = hook.ctx.get("calls", 0) + 1

    model.add_hook("hook_in", count)
    model(torch.ones(1))
    model(torch.ones(1))
    assert model.hook_in.ctx == {"calls": 2}
    model.reset_hooks(clear_contexts=False)
    assert model.hook_in.ctx == {"calls": 2}
    model.reset_hooks()
    assert model.hook_in.ctx == {}


def test_add_caching_hooks_fill_the_cache_until_reset():
    model = Doubler()
    cache = model.add_caching_hooks(names_filter="hook_out")
    assert model.is_caching
    model(torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(cache["hook_out"], torch.tensor([2.0, 4.0]))
    assert list(cache) == ["hook_out"]
    model.reset_hooks()
    assert not model.is_caching
    model(torch.tensor([5.0, 5.0]))
    torch.testing.assert_close(cache["hook_out"], torch.tensor([2.0, 4.0]))  # no longer updated
    some = {}
    model.cache_some(some, lambda name: name == "hook_in")
    model(torch.tensor([3.0]))
    assert list(some) == ["hook_in"]
    model.reset_hooks()
    everything = {}
    model.cache_all(everything)
    model(torch.tensor([3.0]))
    assert set(everything) == {"hook_in", "hook_out"}


def test_check_hooks_to_add_can_refuse_a_hook():
    class NoBackward(Doubler):
        def check_hooks_to_add(self, hook_point, hook_point_name, hook, dir="fwd", is_permanent=False,
                               prepend=False):
            if dir == "bwd":
                raise ValueError(f"no backward hook on {hook_point_name}")

    model = NoBackward()
    model.add_hook("hook_in", keep)
    with pytest.raises(ValueError, match="no backward hook on hook_in"):
        model.add_hook("hook_in", keep, dir="bwd")


def test_bad_direction_names_the_argument():
    hp = HookPoint()
    with pytest.raises(ValueError, match=r"dir='forward' is not a hook direction; pass one of 'fwd', 'bwd'"):
        hp.add_hook(keep, dir="forward")
    with pytest.raises(ValueError, match=r"dir='up'.*'fwd', 'bwd', 'both'"):
        hp.has_hooks(dir="up")


def test_prepended_backward_hook_runs_first():
    model = Doubler()
    order = []
    model.add_hook("hook_in", lambda g, hook: order.append("a"), dir="bwd")
    model.add_hook("hook_in", lambda g, hook: order.append("b"), dir="bwd", prepend=True)
    x = nn.Parameter(torch.ones(2))
    model(x).sum().backward()
    assert order == ["b", "a"]
