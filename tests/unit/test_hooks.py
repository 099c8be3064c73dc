"""Tests for helpers.hook_points: HookPoint and HookedRootModule, on small hand-written models: run_with_hooks and
run_with_cache, then the rest of the classic API (has_hooks and its filters, prepend, reshape conversions, ctx,
list_hooks, add_caching_hooks) and clear errors on a bad direction.

The toy model is the one of the TransformerLens main demo ("Hook Points" section): two layers that
each square their input and add a constant, x -> (x^2 + 3)^2 - 4, with a hook point on the input,
on each square and on each layer's output.
"""

import pytest
import torch
from torch import nn

from helpers import HookedRootModule, HookPoint

HOOK_NAMES = ["hook_in", "layer1.hook_square", "hook_mid", "layer2.hook_square", "hook_out"]


class SquareThenAdd(nn.Module):
    def __init__(self, offset: float):
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(offset))
        self.hook_square = HookPoint()

    def forward(self, x):
        return self.hook_square(x * x) + self.offset


class TwoLayerModel(HookedRootModule):
    def __init__(self):
        super().__init__()
        self.layer1 = SquareThenAdd(3.0)
        self.layer2 = SquareThenAdd(-4.0)
        self.hook_in = HookPoint()
        self.hook_mid = HookPoint()
        self.hook_out = HookPoint()
        self.setup()

    def forward(self, x):
        mid = self.hook_mid(self.layer1(self.hook_in(x)))
        return self.hook_out(self.layer2(mid))


def expected(x: float) -> float:
    return (x**2 + 3) ** 2 - 4


def n_attached(model: HookedRootModule) -> int:
    """Hooks attached to the model's hook points, counted from torch's own registries."""
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


@pytest.fixture
def model():
    return TwoLayerModel()


# ---------------------------------------------------------------- setup and names


def test_setup_names_every_hook_point_by_its_path(model):
    assert set(model.hook_dict) == set(HOOK_NAMES)
    for name, hp in model.hook_dict.items():
        assert hp.name == name
        assert hp is model.get_submodule(name)
    assert set(model.mod_dict) == {name for name, _ in model.named_modules() if name}
    assert model.mod_dict["layer1"] is model.layer1


def test_hook_layer_reads_the_block_index():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.hook_x = HookPoint()

        def forward(self, x):
            return self.hook_x(x)

    class Stack(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([Block() for _ in range(12)])
            self.hook_in = HookPoint()
            self.setup()

    stack = Stack()
    assert stack.hook_dict["blocks.11.hook_x"].layer() == 11
    assert stack.hook_dict["blocks.0.hook_x"].layer() == 0
    with pytest.raises(ValueError, match="hook_in"):
        stack.hook_dict["hook_in"].layer()


# ---------------------------------------------------------------- the demo's numbers


def test_demo_run_with_cache(model):
    out, cache = model.run_with_cache(torch.tensor(5.0))
    assert type(cache) is dict  # a root module's cache is a dict; HookedTransformer's, an ActivationCache
    assert out.item() == 780.0 == expected(5.0)
    assert list(cache.keys()) == HOOK_NAMES  # in the order of the forward pass
    assert [cache[name].item() for name in HOOK_NAMES] == [5.0, 25.0, 28.0, 784.0, 780.0]


def test_demo_zeroing_hook(model):
    seen = []

    def set_to_zero(tensor, hook):
        seen.append(hook.name)
        return torch.tensor(0.0)

    out = model.run_with_hooks(torch.tensor(5.0), fwd_hooks=[("layer2.hook_square", set_to_zero)])
    assert out.item() == -4.0
    assert seen == ["layer2.hook_square"]
    assert n_attached(model) == 0
    assert model(torch.tensor(5.0)).item() == 780.0


# ---------------------------------------------------------------- hook functions


def test_hook_returning_none_keeps_the_activation(model):
    calls = []
    fwd_hooks = [("hook_mid", lambda x, hook: calls.append(x.item()))]
    out = model.run_with_hooks(torch.tensor(2.0), fwd_hooks=fwd_hooks)
    assert out.item() == expected(2.0)
    assert calls == [7.0]


def test_hook_returning_a_tensor_replaces_it(model):
    out = model.run_with_hooks(torch.tensor(2.0), fwd_hooks=[("hook_mid", lambda x, hook: x + 1)])
    assert out.item() == 8.0**2 - 4


def test_hook_editing_in_place(model):
    def add_one(x, hook):
        x += 1

    out = model.run_with_hooks(torch.tensor([1.0, 2.0]), fwd_hooks=[("hook_in", add_one)])
    torch.testing.assert_close(out, torch.tensor([expected(2.0), expected(3.0)]))


def test_hooks_compose_in_order(model):
    out = model.run_with_hooks(
        torch.tensor(1.0),
        fwd_hooks=[("hook_in", lambda x, hook: x * 2), ("hook_in", lambda x, hook: x + 1)],
    )
    assert out.item() == expected(3.0)


def test_wrong_shape_names_the_hook_and_both_shapes(model):
    def bad(x, hook):
        return torch.zeros(3, 2)

    with pytest.raises(ValueError) as err:
        model.run_with_hooks(torch.ones(4), fwd_hooks=[("hook_mid", bad)])
    message = str(err.value)
    assert "hook_mid" in message and "bad" in message
    assert "(3, 2)" in message and "(4,)" in message
    assert n_attached(model) == 0


def test_hook_returning_a_non_tensor_is_an_error(model):
    with pytest.raises(TypeError, match="hook_out"):
        model.run_with_hooks(torch.tensor(1.0), fwd_hooks=[("hook_out", lambda x, hook: 3.0)])


def test_hooks_are_removed_when_a_hook_raises(model):
    def boom(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(torch.tensor(1.0), fwd_hooks=[("hook_in", lambda x, hook: x * 0),
                                                            ("hook_mid", boom)])
    assert n_attached(model) == 0
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())
    assert model(torch.tensor(1.0)).item() == expected(1.0)


def test_unknown_hook_name_suggests_close_names(model):
    with pytest.raises(KeyError) as err:
        model.run_with_hooks(torch.tensor(1.0), fwd_hooks=[("layer2.hook_sqare", lambda x, hook: x)])
    assert "layer2.hook_square" in str(err.value)
    with pytest.raises(KeyError, match="hook_mid"):
        model.run_with_cache(torch.tensor(1.0), names_filter="hook_mdi")
    assert n_attached(model) == 0


def test_filter_function_attaches_to_every_matching_point(model):
    seen = []
    model.run_with_hooks(torch.tensor(1.0), fwd_hooks=[(lambda name: "square" in name,
                                                        lambda x, hook: seen.append(hook.name))])
    assert seen == ["layer1.hook_square", "layer2.hook_square"]


# ---------------------------------------------------------------- run_with_cache


@pytest.mark.parametrize(
    "names_filter, names",
    [
        (None, HOOK_NAMES),
        ("hook_mid", ["hook_mid"]),
        (["hook_out", "hook_in"], ["hook_in", "hook_out"]),
        (lambda name: name.endswith("square"), ["layer1.hook_square", "layer2.hook_square"]),
    ],
)
def test_run_with_cache_names_filter(model, names_filter, names):
    _, cache = model.run_with_cache(torch.tensor(3.0), names_filter=names_filter)
    assert list(cache.keys()) == names
    assert n_attached(model) == 0


def test_run_with_cache_remove_batch_dim_and_device(model):
    x = torch.tensor([[1.0, 2.0, 3.0]])
    _, full = model.run_with_cache(x)
    _, cache = model.run_with_cache(x, remove_batch_dim=True, device="meta")
    for name in HOOK_NAMES:
        assert cache[name].device.type == "meta"
        assert cache[name].shape == full[name][0].shape == (3,)


def test_cached_activations_are_detached():
    model = TwoLayerModel()
    _, cache = model.run_with_cache(torch.tensor(1.0, requires_grad=True))
    assert all(not t.requires_grad for t in cache.values())


def test_run_with_cache_incl_bwd(model):
    x = torch.tensor(5.0, requires_grad=True)
    out, cache = model.run_with_cache(x, incl_bwd=True)
    # d out / d activation: out = (mid^2 - 4) with mid = in^2 + 3
    assert cache["hook_out_grad"].item() == 1.0
    assert cache["layer2.hook_square_grad"].item() == 1.0
    assert cache["hook_mid_grad"].item() == 2 * 28.0
    assert cache["hook_in_grad"].item() == 2 * 28.0 * 2 * 5.0 == x.grad.item()
    assert n_attached(model) == 0


# ---------------------------------------------------------------- adding and removing hooks


def test_add_hook_and_reset_hooks(model):
    model.add_hook("hook_mid", lambda x, hook: x * 0)
    assert model(torch.tensor(2.0)).item() == -4.0
    model.reset_hooks()
    assert n_attached(model) == 0
    assert model(torch.tensor(2.0)).item() == expected(2.0)


def test_perma_hooks_survive_reset_and_runs(model):
    model.add_perma_hook("hook_in", lambda x, hook: x + 1)
    assert model(torch.tensor(1.0)).item() == expected(2.0)
    model.reset_hooks()
    assert model(torch.tensor(1.0)).item() == expected(2.0)
    out = model.run_with_hooks(torch.tensor(1.0), fwd_hooks=[("hook_mid", lambda x, hook: x * 0)])
    assert out.item() == -4.0
    assert model(torch.tensor(1.0)).item() == expected(2.0)
    model.reset_hooks(including_permanent=True)
    assert n_attached(model) == 0
    assert model(torch.tensor(1.0)).item() == expected(1.0)


def test_hooks_context_manager(model):
    with model.hooks(fwd_hooks=[("hook_in", lambda x, hook: x * 2)]) as m:
        assert m is model
        assert model(torch.tensor(1.0)).item() == expected(2.0)
    assert n_attached(model) == 0
    assert model(torch.tensor(1.0)).item() == expected(1.0)


def test_hooks_context_manager_removes_its_hooks_even_on_error(model):
    class Oops(Exception):
        pass

    with pytest.raises(Oops):
        with model.hooks(fwd_hooks=[("hook_in", lambda x, hook: x * 2)]):
            raise Oops
    assert n_attached(model) == 0


def test_leaving_a_hooks_block_keeps_hooks_added_before_it(model):
    model.add_hook("hook_in", lambda x, hook: x + 1)
    with model.hooks(fwd_hooks=[("hook_mid", lambda x, hook: x * 2)]):
        with model.hooks(fwd_hooks=[("hook_out", lambda x, hook: x + 100)]):
            assert model(torch.tensor(1.0)).item() == (2 * (2.0**2 + 3)) ** 2 - 4 + 100
        assert model(torch.tensor(1.0)).item() == (2 * (2.0**2 + 3)) ** 2 - 4
    _, cache = model.run_with_cache(torch.tensor(1.0))
    assert cache["hook_in"].item() == 2.0  # the hook added with add_hook is still there
    model.reset_hooks()
    assert n_attached(model) == 0


def test_reset_hooks_end_false_keeps_the_hooks(model):
    model.run_with_hooks(torch.tensor(1.0), fwd_hooks=[("hook_in", lambda x, hook: x * 2)],
                         reset_hooks_end=False)
    assert model(torch.tensor(1.0)).item() == expected(2.0)
    model.reset_hooks()
    assert model(torch.tensor(1.0)).item() == expected(1.0)


# ---------------------------------------------------------------- the rest of the classic API


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


def test_bad_direction_names_the_argument(model):
    hp = HookPoint()
    with pytest.raises(ValueError, match=r"dir='forward' is not a hook direction; pass one of 'fwd', 'bwd'"):
        hp.add_hook(keep, dir="forward")
    with pytest.raises(ValueError, match=r"dir='sideways' is not a hook direction; pass one of 'fwd', 'bwd'"):
        model.add_hook("hook_in", keep, dir="sideways")
    with pytest.raises(ValueError, match=r"dir='up'.*'fwd', 'bwd', 'both'"):
        hp.has_hooks(dir="up")


# ---------------------------------------------------------------- backward hooks


def test_backward_hooks_see_the_gradients(model):
    grads = {}

    def save_grad(grad, hook):
        grads[hook.name] = grad.item()

    x = torch.tensor(5.0, requires_grad=True)
    out = model.run_with_hooks(x, bwd_hooks=[(lambda name: True, save_grad)], reset_hooks_end=False)
    out.backward()
    model.reset_hooks()
    assert grads == {"hook_out": 1.0, "layer2.hook_square": 1.0, "hook_mid": 56.0,
                     "layer1.hook_square": 56.0, "hook_in": 560.0}
    assert x.grad.item() == 560.0
    assert model.layer1.offset.grad.item() == 56.0
    assert n_attached(model) == 0


def test_backward_hook_can_replace_the_gradient(model):
    x = torch.tensor(5.0, requires_grad=True)
    out = model.run_with_hooks(x, bwd_hooks=[("hook_mid", lambda g, hook: g * 0 + 1)], reset_hooks_end=False)
    out.backward()
    model.reset_hooks()
    assert x.grad.item() == 1.0 * 2 * 5.0  # d mid / d x, as the gradient reaching hook_mid is now 1
    assert model.layer1.offset.grad.item() == 1.0
    assert model.layer2.offset.grad.item() == 1.0  # reached before hook_mid in the backward pass: unchanged


def test_backward_hooks_with_reset_hooks_end_warn(model):
    with pytest.warns(UserWarning, match="reset_hooks_end=False"):
        model.run_with_hooks(torch.tensor(1.0), bwd_hooks=[("hook_mid", lambda g, hook: None)])
    assert n_attached(model) == 0


def test_prepended_backward_hook_runs_first():
    model = Doubler()
    order = []
    model.add_hook("hook_in", lambda g, hook: order.append("a"), dir="bwd")
    model.add_hook("hook_in", lambda g, hook: order.append("b"), dir="bwd", prepend=True)
    x = nn.Parameter(torch.ones(2))
    model(x).sum().backward()
    assert order == ["b", "a"]


def test_is_hooked_sees_add_hook_and_raw_pytorch_hooks():
    point = HookPoint()
    assert not point.is_hooked()
    point.add_hook(lambda activation, hook: None, dir="bwd")
    assert point.is_hooked()
    point.remove_hooks("both")
    assert not point.is_hooked()
    handle = point.register_forward_hook(lambda module, inputs, output: None)  # PyTorch's own, not add_hook
    assert point.is_hooked() and not point.has_hooks()
    handle.remove()
    assert not point.is_hooked()
