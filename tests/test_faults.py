"""Faults and misuse as learners meet them: a Windows clone, damaged weights and caches, hook cells re-run or
interrupted, batches where one prompt is expected, NaNs, and threads. Each test provokes the fault and
asserts what the learner sees: the right result, or an error that names the cause and the repair."""

import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch

from helpers import HookedTransformer, course_models

REPO = Path(__file__).resolve().parents[1]


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
