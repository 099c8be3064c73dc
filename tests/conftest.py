"""Test settings: one torch thread (the models here are tiny; threads only compete) and no network."""

import os

import pytest
import torch
from huggingface_hub import constants

from helpers import HookedTransformer
from tests.fake_hub import FakeHub

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@torch.no_grad()
def randomise_(model: torch.nn.Module, seed: int = 1) -> None:
    """Random LayerNorm weights and biases, and random biases everywhere (they start at 1 and 0),
    so that tests of weight processing and conversions are not trivially true."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
        if name.endswith(".w"):
            param.copy_(1 + 0.3 * noise)
        elif name.endswith(".b") or name.split(".")[-1].startswith("b_"):
            param.copy_(0.3 * noise)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in HF_HUB_CACHE, offline, and the FakeHub (tests/fake_hub.py) whose hf_download,
    cache and add fill it; its serve(monkeypatch) puts it in the Hub's place for tests that let the loader download."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("COURSE_EMBEDDED_MODELS", raising=False)
    return FakeHub(tmp_path / "hub", "small")


@pytest.fixture(scope="module")
def embedded_gpt2():
    """course-gpt2 as the notebooks load it on the embedded path (the notebooks' claims tests check against it)."""
    return HookedTransformer.from_pretrained("course-gpt2")


def pytest_collection_modifyitems(items):
    """The tests marked slow first (a stable sort): with pytest-xdist's --dist loadfile and --no-loadscope-reorder
    (the Makefile's), the files that hold them, the longest, start first, and the many short files even out the end
    (by default xdist starts the files with the most tests first, and the longest files came last)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
