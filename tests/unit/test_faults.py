"""Faults and misuse as learners meet them: a Windows clone, damaged weights and caches, hook cells re-run or
interrupted, batches where one prompt is expected, NaNs, and threads. Each test provokes the fault and
asserts what the learner sees: the right result, or an error that names the cause and the repair."""

import hashlib
import io
import json
import shutil
import subprocess
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file, save
from torch.utils.hooks import RemovableHandle

from helpers import (
    HookedRootModule,
    HookedTransformer,
    HookedTransformerConfig,
    HookPoint,
    course_models,
    hook_points,
    loading,
)
from helpers.conversion import classic
from helpers.pick import pick_model
from tests.fake_hub import OTHELLO

REPO = Path(__file__).resolve().parents[2]


def message(error_type, fn, *args, **kwargs) -> str:
    with pytest.raises(error_type) as err:
        fn(*args, **kwargs)
    return str(err.value)


# ---------------------------------------------------------------- 1. a clone by Git for Windows


def test_a_clone_with_crlf_conversion_loads_every_course_model(tmp_path, monkeypatch):
    """Git for Windows clones with core.autocrlf=true; .gitattributes keeps data/ byte-exact."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs git and a git checkout of the course")
    clone = tmp_path / "clone"
    subprocess.run(["git", "-c", "core.autocrlf=true", "clone", "-q", str(REPO), str(clone)], check=True)
    assert b"\r\n" in (clone / "README.md").read_bytes()  # the conversion did happen outside data/
    monkeypatch.setattr(course_models, "MODELS_DIR", clone / "data" / "models")
    for name in course_models.COURSE_MODELS:
        for step in course_models.checkpoint_steps(name):
            course_models.load_course_model(name, step)
        assert course_models.metrics(name)
        HookedTransformer.from_pretrained(name, device="cpu")


def test_crlf_line_endings_are_explained(tmp_path, monkeypatch):
    (tmp_path / "course-gpt2").mkdir()
    shutil.copy(course_models.MODELS_DIR / "manifest.json", tmp_path)
    lf = (course_models.MODELS_DIR / "course-gpt2" / "config.json").read_bytes()
    (tmp_path / "course-gpt2" / "config.json").write_bytes(lf.replace(b"\n", b"\r\n"))
    monkeypatch.setattr(course_models, "MODELS_DIR", tmp_path)
    text = message(OSError, course_models.model_config, "course-gpt2")
    assert "line endings (CRLF)" in text and "core.autocrlf" in text
    assert "git config core.autocrlf false" in text and "git checkout HEAD -- data" in text
    (tmp_path / "course-gpt2" / "config.json").write_bytes(lf.replace(b"}", b" }", 1))
    text = message(OSError, course_models.model_config, "course-gpt2")
    assert "corrupted" in text and "CRLF" not in text


# ---------------------------------------------------------------- 5 and 7. caches asked for what they cannot hold


@pytest.fixture(scope="module")
def model():
    return HookedTransformer.from_pretrained("course-gpt2", device="cpu")


@pytest.fixture(scope="module")
def cache(model):
    return model.run_with_cache("When Mary and John")[1]


def test_remove_batch_dim_on_a_batch_of_two_is_an_error(model):
    text = message(ValueError, model.run_with_cache, ["When Mary and John", "When Tom and Sue"],
                   remove_batch_dim=True)
    assert "remove_batch_dim=True" in text and "a batch of 2" in text and "one prompt at a time" in text
    assert not model.list_hooks()
    _, one = model.run_with_cache("When Mary and John", remove_batch_dim=True)
    assert one["resid_pre", 0].ndim == 2


def test_short_name_without_a_layer_asks_for_one(cache):
    text = message(KeyError, cache.__getitem__, "pattern")
    assert "give its layer" in text and "cache['pattern', 0]" in text
    assert "pattern" not in cache  # membership still answers, without raising


def test_result_names_use_attn_result(model, cache):
    text = message(KeyError, cache.__getitem__, ("result", 0))
    assert "blocks.0.attn.hook_result" in text and "use_attn_result=True" in text
    model.cfg.use_attn_result = True  # the advice works
    try:
        assert model.run_with_cache("When Mary and John")[1]["result", 0].shape[-2:] == (model.cfg.n_heads,
                                                                                          model.cfg.d_model)
    finally:
        model.cfg.use_attn_result = False


def test_cache_to_a_missing_device_says_which_exist(cache):
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    text = message(ValueError, cache.to, missing)
    assert f"device={missing!r} is not available on this machine" in text and "Available devices: cpu" in text


# ---------------------------------------------------------------- 2. a hook cell run twice

CELL = """
def count_calls(activation, hook):
    calls.append(hook.name)
"""


def run_cell(source: str, namespace: dict):
    """Run a notebook cell's source: each run defines its functions anew (new objects, same code)."""
    exec(compile(source, "<cell>", "exec"), namespace)


def test_adding_the_same_hook_twice_warns_once(model):
    namespace = {"calls": []}
    try:
        run_cell(CELL, namespace)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.add_hook("blocks.0.hook_resid_pre", namespace["count_calls"])
        run_cell(CELL, namespace)  # the cell is run again
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.add_hook("blocks.0.hook_resid_pre", namespace["count_calls"])
        assert len(caught) == 1
        text = str(caught[0].message)
        assert "'count_calls' is already attached to blocks.0.hook_resid_pre" in text and "reset_hooks()" in text
        model("When Mary and John")
        assert namespace["calls"] == ["blocks.0.hook_resid_pre"] * 2  # what the warning says
    finally:
        model.reset_hooks()


def test_hooks_from_one_factory_for_different_heads_do_not_warn(model):
    def ablate(head):
        def hook(z, hook):
            z[:, :, head] = 0
        return hook

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.add_hook("blocks.0.attn.hook_z", ablate(0))
            model.add_hook("blocks.0.attn.hook_z", ablate(3))
    finally:
        model.reset_hooks()


def test_reset_hooks_says_how_many_it_removed(model, capsys):
    model.add_hook(lambda name: name.endswith("hook_z"), lambda z, hook: None)
    model.add_perma_hook("hook_embed", lambda x, hook: None)
    try:
        model.reset_hooks(verbose=True)
        assert f"removed {model.cfg.n_layers} hooks, kept 1" in capsys.readouterr().out
        model.reset_hooks()
        assert capsys.readouterr().out == ""
    finally:
        model.reset_hooks(including_permanent=True)
    assert not model.list_hooks()


# ---------------------------------------------------------------- 4. damaged files of the real models


def cached(repo: str, filename: str) -> Path:
    """The snapshot entry of a cached file (a link to its blob)."""
    return Path(huggingface_hub.hf_hub_download(repo, filename, local_files_only=True))


def replace(repo: str, filename: str, data: bytes) -> None:
    """Put ``data`` in the cache as that file, in a blob named by its own sha256 (consistent, but wrong)."""
    link = cached(repo, filename)
    blob = link.resolve().parent / hashlib.sha256(data).hexdigest()
    blob.write_bytes(data)
    link.unlink()
    link.symlink_to(blob)


def edited_safetensors(repo: str, edit) -> bytes:
    sd = load_file(cached(repo, "model.safetensors"))
    edit(sd)
    return save(sd)


def edited_config(repo: str, edit) -> bytes:
    config = json.loads(cached(repo, "config.json").read_text())
    edit(config)
    return json.dumps(config).encode()


def set_nan(sd):
    sd["transformer.h.1.mlp.c_fc.weight"][3, 5] = float("nan")


def set_int(sd):
    sd["transformer.h.0.attn.c_proj.bias"] = sd["transformer.h.0.attn.c_proj.bias"].to(torch.int32)


DAMAGES = {  # what is done to gpt2's cached files -> the file named in the repair, and what the error says
    "a truncated model.safetensors": (lambda data: ("model.safetensors", data[: len(data) // 2]),
                                      "model.safetensors", "Cannot read the weights file"),
    "a zeroed model.safetensors": (lambda data: ("model.safetensors", bytes(len(data))),
                                   "model.safetensors", "Cannot read the weights file"),
    "NaN weights": (lambda data: ("model.safetensors", edited_safetensors("gpt2", set_nan)),
                    "model.safetensors", "tensor h.1.mlp.c_fc.weight holds NaN or infinite values"),
    "an integer tensor": (lambda data: ("model.safetensors", edited_safetensors("gpt2", set_int)),
                          "model.safetensors", "tensor h.0.attn.c_proj.bias has dtype torch.int32"),
    "a config with a layer too many": (
        lambda data: ("config.json", edited_config("gpt2", lambda c: c.update(n_layer=3))),
        "model.safetensors", "has no tensor h.2.ln_1.weight, which its config.json"),
    "a config with a layer too few": (
        lambda data: ("config.json", edited_config("gpt2", lambda c: c.update(n_layer=1))),
        "config.json", "holds layer 1, but its config.json"),
    "a config with the wrong width": (
        lambda data: ("config.json", edited_config("gpt2", lambda c: c.update(n_embd=96, n_head=4))),
        "model.safetensors", "tensor wte.weight has shape (50257, 64), but its config.json"),
    "a config without n_layer": (lambda data: ("config.json", edited_config("gpt2", lambda c: c.pop("n_layer"))),
                                 "config.json", "lacks the field 'n_layer'"),
    "a config that does not parse": (lambda data: ("config.json", cached("gpt2", "config.json").read_bytes()[:-20]),
                                     "config.json", "is not valid JSON"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_gpt2_file_is_named_with_its_repair(offline_cache, damage):
    offline_cache.hf_download("hf download gpt2 config.json model.safetensors")
    make, repaired, says = DAMAGES[damage]
    filename, data = make(cached("gpt2", "model.safetensors").read_bytes())
    replace("gpt2", filename, data)
    text = message(loading.DamagedFileError, HookedTransformer.from_pretrained, "gpt2-small")
    assert says in text and f"hf download gpt2 {repaired} --force-download" in text


def test_a_bit_flip_in_a_cached_blob_is_found_by_its_name(offline_cache):
    offline_cache.hf_download("hf download gpt2 config.json model.safetensors")
    blob = cached("gpt2", "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1  # one bit, deep inside a weight: the file still parses
    blob.write_bytes(bytes(data))
    text = message(loading.DamagedFileError, HookedTransformer.from_pretrained, "gpt2-small")
    assert f"names it by its hash, {blob.name}" in text
    assert "hf download gpt2 model.safetensors --force-download" in text


def test_a_truncated_pth_and_pick_model(offline_cache):
    offline_cache.hf_download(f"hf download {OTHELLO} synthetic_model.pth")
    data = cached(OTHELLO, "synthetic_model.pth").read_bytes()
    replace(OTHELLO, "synthetic_model.pth", data[: len(data) - 1000])
    text = message(loading.DamagedFileError, pick_model, "othello-gpt")
    assert "Cannot read the weights file" in text and "synthetic_model.pth" in text
    assert f"hf download {OTHELLO} synthetic_model.pth --force-download" in text
    assert "COURSE_EMBEDDED_MODELS=1" in text


def test_a_classic_file_with_a_missing_tensor(offline_cache):
    offline_cache.hf_download(f"hf download {OTHELLO} synthetic_model.pth")
    sd = torch.load(cached(OTHELLO, "synthetic_model.pth"), weights_only=True)
    del sd["blocks.1.attn.W_K"]
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    replace(OTHELLO, "synthetic_model.pth", buffer.getvalue())
    text = message(loading.DamagedFileError, HookedTransformer.from_pretrained, "othello-gpt")
    assert "has no tensor blocks.1.attn.W_K, which the othello-gpt config requires" in text


@pytest.mark.parametrize("name", ["solu-2l", "attn-only-1l", "gelu-4l", "othello-gpt"])
def test_the_expected_classic_tensors_are_the_models(name):
    config = {**loading.MODELS[name].config, "device": "cpu", "tokenizer_name": None, "d_vocab": 100, "n_ctx": 32}
    model = HookedTransformer(HookedTransformerConfig.from_dict(config))
    assert classic.classic_shapes(config) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- 6. NaN on both attention paths


@pytest.mark.parametrize("n_pos", [5, 100])
@pytest.mark.parametrize("where", ["q", "k", "v"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_both_attention_paths_spread_non_finite_values_alike(model, n_pos, where, value):
    """z of layer 1 after one non-finite entry at position 2, head 1 of its q, k or v: the fused kernel
    (nothing hooked on the pattern) and the explicit softmax (pattern hooked) spoil the same entries."""
    tokens = torch.randint(0, model.cfg.d_vocab, (2, n_pos), generator=torch.Generator().manual_seed(n_pos))

    def spoil(x, hook):
        x[0, 2, 1, 3] = value

    def z_of(*extra):
        hooks = [(f"blocks.1.attn.hook_{where}", spoil), *extra]
        with model.hooks(hooks):
            return model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z")[1]["z", 1]

    fused = z_of()
    explicit = z_of(("blocks.1.attn.hook_pattern", lambda pattern, hook: None))
    assert torch.equal(fused.isfinite(), explicit.isfinite())
    assert not fused[0, 2, 1].isfinite().all() and fused[1].isfinite().all()  # the other prompt is untouched
    if where != "v":  # a query or a key reaches the rows from its position on only
        assert fused[0, :2].isfinite().all()
    torch.testing.assert_close(fused[fused.isfinite()], explicit[explicit.isfinite()])


# ---------------------------------------------------------------- 3. interrupts during a hooked call's cleanup

PROMPT = "When Mary and John went to the store"
CLEANUP_STEPS = [(HookedRootModule, "reset_hooks"), (HookedRootModule, "remove_all_hook_fns"),
                 (HookPoint, "remove_hooks"), (RemovableHandle, "remove")]


def n_attached(model) -> int:
    """Hooks attached to the model's hook points, counted from torch's own registries."""
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def double(x, hook):
    return 2 * x


HOOKED_CALLS = {  # each attaches two hooks to two points (four in all) for one call
    "run_with_hooks": lambda m: m.run_with_hooks(PROMPT, fwd_hooks=[("blocks.0.hook_resid_mid", double),
                                                                     (lambda n: n.endswith("ln1.hook_scale"),
                                                                      double), ("blocks.1.hook_resid_mid", double)]),
    "run_with_cache": lambda m: m.run_with_cache(PROMPT, names_filter=["blocks.0.hook_resid_mid",
                                                                        "blocks.1.hook_resid_mid"], incl_bwd=False),
    "hooks": lambda m: hooks_block(m),
}


def hooks_block(model):
    """A notebook cell with a ``with model.hooks(...)`` block."""
    with model.hooks([("blocks.0.hook_resid_mid", double), ("blocks.1.hook_resid_mid", double)]):
        model(PROMPT)


def calls_during_cleanup(model, call, cls, method) -> int:
    """How many times ``call``'s cleanup calls ``cls.method``."""
    original, count = getattr(cls, method), [0]

    def counted(self, *args, **kwargs):
        count[0] += 1
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, method, counted)
        call(model)
    return count[0]


def interrupting(original, at: int, after: bool):
    """``original`` (a method), raising KeyboardInterrupt at its ``at``-th call, before or ``after`` its work."""
    seen = [0]

    def interrupted(self, *args, **kwargs):
        seen[0] += 1
        if seen[0] == at and not after:
            raise KeyboardInterrupt
        out = original(self, *args, **kwargs)
        if seen[0] == at and after:
            raise KeyboardInterrupt
        return out

    return interrupted


@pytest.mark.parametrize("call", HOOKED_CALLS)
@pytest.mark.parametrize("step", CLEANUP_STEPS, ids=lambda s: f"{s[0].__name__}.{s[1]}")
def test_an_interrupt_at_any_step_of_the_cleanup_leaves_no_hook(model, call, step):
    cls, method = step
    clean = model(PROMPT)
    n_steps = calls_during_cleanup(model, HOOKED_CALLS[call], cls, method)
    assert n_steps > 0
    original = getattr(cls, method)
    for at in range(1, n_steps + 1):
        for after in (False, True):  # the interrupt lands before, or after, the step does its work
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(cls, method, interrupting(original, at, after))
                with pytest.raises(KeyboardInterrupt):
                    HOOKED_CALLS[call](model)
            assert n_attached(model) == 0 and not model.list_hooks() and model.context_level == 0
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                torch.testing.assert_close(model(PROMPT), clean, rtol=0, atol=0)


@pytest.mark.parametrize("call", HOOKED_CALLS)
def test_hooks_whose_cleanup_never_ran_are_dropped_by_the_next_hooked_call(model, monkeypatch, call):
    clean = model(PROMPT)

    def interrupt_first(fn):
        raise KeyboardInterrupt

    monkeypatch.setattr(hook_points, "_to_the_end", interrupt_first)
    with pytest.raises(KeyboardInterrupt):
        HOOKED_CALLS[call](model)
    monkeypatch.undo()
    assert n_attached(model) > 0  # the cleanup never ran
    with pytest.warns(UserWarning, match=r"Removed \d+ hooks? left attached by an earlier run_with_hooks"):
        _, cache = model.run_with_cache(PROMPT)
    torch.testing.assert_close(cache["ln_final.hook_normalized"], model.run_with_cache(PROMPT)[1][
        "ln_final.hook_normalized"], rtol=0, atol=0)
    assert n_attached(model) == 0 and model.context_level == 0
    torch.testing.assert_close(model(PROMPT), clean, rtol=0, atol=0)


# ---------------------------------------------------------------- 8. threads


def test_two_threads_running_hooked_forwards_each_get_their_own_result(model):
    """Each thread's hooks wait at a barrier, so that both threads' hooks are attached at the same time."""
    prompts = ["When Mary and John went to the store", "The cat sat on the mat and then it"]
    barrier = threading.Barrier(2, timeout=30)

    def scale_by(factor):
        def hook(x, hook):
            barrier.wait()
            return factor * x
        return hook

    def alone(i):
        with model.hooks([("blocks.0.hook_resid_mid", lambda x, hook: (i + 2) * x)]):
            return model(prompts[i]), model.run_with_cache(prompts[i], names_filter="blocks.1.hook_resid_post")[1]

    expected = [alone(0), alone(1)]
    model.add_hook("blocks.1.hook_resid_pre", double)  # a permanent hook: every thread sees it
    try:
        expected_permanent = [alone(0), alone(1)]

        def work(i):
            out = []
            for _ in range(5):
                logits = model.run_with_hooks(prompts[i], fwd_hooks=[("blocks.0.hook_resid_mid", scale_by(i + 2))])
                with model.hooks([("blocks.0.hook_resid_mid", scale_by(i + 2))]):
                    _, cache = model.run_with_cache(prompts[i], names_filter="blocks.1.hook_resid_post")
                out.append((logits, cache))
            return out

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(work, [0, 1]))
    finally:
        model.reset_hooks()
    for i, runs in enumerate(results):
        assert expected_permanent[i][0].ne(expected[i][0]).any()  # the permanent hook did change the logits
        for logits, cache in runs:
            torch.testing.assert_close(logits, expected_permanent[i][0])
            torch.testing.assert_close(cache["resid_post", 1], expected_permanent[i][1]["resid_post", 1])
    assert n_attached(model) == 0
