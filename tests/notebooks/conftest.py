"""Fixtures of the notebooks' tests."""

import pytest

from helpers import HookedTransformer


@pytest.fixture(scope="module")
def embedded_gpt2():
    """course-gpt2 as the notebooks load it on the embedded path."""
    return HookedTransformer.from_pretrained("course-gpt2")
